#!/usr/bin/env python3
"""train_bpe.py — trains the tiny test model's byte-level BPE (models/tiny/vocab.json + merges.txt).

The corpus is generated here, deterministically: caption templates filled from word lists,
written the way dalle-mini's text normalizer writes prompts (lower case, one leading space,
punctuation turned into ", "). The tokenizer is HF `tokenizers`' byte-level BPE with
add_prefix_space=False, like dalle-mini's. Ids: <s>=0 <pad>=1 </s>=2 <unk>=3, then the 256
byte symbols and the merges, and <mask> as the last id (dalle-mini puts it last too).
Vocabulary size 4000 in all. Output is byte-identical from run to run.

    /work/venv-ref/bin/python tools/reference/train_bpe.py [--out models/tiny]
"""
import argparse
import itertools
import json
import os
import random
import tempfile

from tokenizers import ByteLevelBPETokenizer

VOCAB_SIZE = 4000  # including the 5 special tokens
SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]  # ids 0..3; "<mask>" is appended last

COLORS = """red orange yellow green blue purple violet pink brown black white gray grey golden
silver teal turquoise crimson scarlet beige ivory navy maroon olive lime magenta cyan amber
bronze copper emerald indigo lavender peach coral mint rusty pastel neon dark light pale""".split()

ADJECTIVES = """big small tiny huge giant little old young ancient modern futuristic rustic cozy
quiet busy crowded empty lonely happy sad angry sleepy curious friendly fluffy furry shiny
glowing broken wooden metal glass plastic stone marble paper cardboard wet dry frozen melting
burning floating flying running sitting standing sleeping smiling laughing dancing singing
beautiful ugly cute scary strange weird funny elegant fancy simple colorful bright dim foggy
misty rainy snowy sunny cloudy stormy windy dusty muddy sandy rocky grassy leafy flowery
striped spotted checkered fuzzy smooth rough soft hard heavy tall short long round square
vintage retro medieval victorian cyberpunk steampunk gothic baroque minimalist surreal""".split()

NOUNS = """cat dog horse cow pig sheep goat chicken duck goose rabbit mouse rat hamster squirrel
fox wolf bear panda koala kangaroo lion tiger leopard cheetah elephant giraffe zebra hippo
rhino monkey gorilla chimpanzee sloth otter beaver raccoon owl eagle hawk parrot penguin
flamingo swan pigeon crow robin sparrow whale dolphin shark octopus squid crab lobster
jellyfish turtle frog snake lizard dragon unicorn dinosaur robot alien astronaut wizard
knight princess king queen pirate ninja samurai cowboy chef doctor teacher farmer painter
musician soldier detective scientist ghost vampire zombie mermaid fairy giant dwarf elf
house castle tower bridge church temple cabin barn skyscraper lighthouse windmill tent igloo
car truck bus train bicycle motorcycle boat ship airplane helicopter rocket spaceship submarine
tractor scooter skateboard balloon kite umbrella hat chair table sofa bed lamp clock mirror
window door fence wall roof garden forest jungle desert beach ocean river lake mountain
volcano island cave canyon valley meadow field farm city village street road highway park
market library museum kitchen bedroom bathroom classroom office factory station airport
harbor stadium pizza burger sandwich salad soup cake cookie donut pie bread cheese apple
banana orange cherry strawberry grape lemon watermelon pineapple avocado carrot tomato
potato mushroom pumpkin coffee tea milk juice wine beer sushi taco noodles ramen dumpling
flower rose tulip sunflower daisy tree oak pine palm cactus bush leaf moon sun star planet
galaxy comet cloud rainbow storm snow rain fire smoke ice crystal diamond gold treasure
book guitar piano violin drum trumpet camera phone computer television radio lantern candle
sword shield crown ring necklace shoe boot sock glove scarf jacket dress shirt sweater""".split()

VERBS = """eating drinking reading writing painting playing riding driving flying swimming
jumping climbing walking running sleeping dancing singing cooking building fixing holding
carrying chasing watching hugging kissing fighting wearing juggling surfing skiing skating
fishing hunting exploring sailing rowing knitting baking gardening studying""".split()

PLACES = """on the moon|in space|under the sea|in a forest|on a beach|in the desert|on a mountain
top|in a city|at night|at sunset|at sunrise|in the rain|in the snow|in a kitchen|in a library
|on mars|in a castle|in a museum|on a boat|in a field of flowers|in new york|in paris|in tokyo
|in london|in the jungle|in a cave|on a rooftop|in a garden|at the park|in a dream""".replace(
    "\n", " ").split("|")

STYLES = """oil painting|watercolor|pencil sketch|digital art|pixel art|3d render|photograph
|studio photo|anime|cartoon|comic book|vaporwave|ukiyo-e|art deco|art nouveau|low poly|claymation
|stained glass|mosaic|graffiti|charcoal drawing|ink drawing|trending on artstation
|unreal engine|highly detailed|4k|8k|hdr|cinematic lighting|by van gogh|by picasso|by monet
|by rembrandt|by dali|by hokusai|by warhol|by da vinci|national geographic""".replace(
    "\n", "").split("|")

TEMPLATES = [
    " a {adj} {noun} {place}",
    " a {color} {noun} {verb} a {noun2}",
    " {adj} {noun} , {style}",
    " the {noun} is {verb} {place} , {style}",
    " an illustration of a {adj} {color} {noun}",
    " a photo of {num} {noun}s {place}",
    " a {noun} made of {noun2}",
    " {color} and {color2} {noun} , {style} , {style2}",
    " a painting of a {noun} {verb} with a {noun2} {place}",
    " {num} {adj} {noun}s and a {color} {noun2}",
    " a {noun} in the style of {style}",
    " close up of a {adj} {noun} {verb}",
    " a {noun} wearing a {color} {noun2} , {style}",
    " a {adj} {noun} next to a {adj2} {noun2} {place}",
    " the year {year} , {noun} {place}",
    " {noun} , {noun2} , {noun3} and {noun4}",
    " a {noun} 's {noun2} {place}",
    " my {noun} doesn't like the {noun2} , it 's {adj}",
    " {num}% {color} {noun} & {noun2} / {adj}",
    " a {noun} ! a {noun2} ? \" {adj} \" # {noun3}",
]


def syllable_names(rng, n):
    """Made-up names and places, so the BPE has enough words to fill 4000 ids."""
    onsets = "b c d f g h j k l m n p r s t v w z br cr dr fr gr pr tr bl cl fl gl pl sl st sp ch sh th".split()
    vowels = "a e i o u ai ea ee oo ou ie".split()
    codas = ["", "", "n", "r", "s", "l", "m", "t", "nd", "rk", "st", "ng", "x"]
    out = []
    for _ in range(n):
        k = rng.choice([2, 2, 3, 3, 4])
        out.append("".join(rng.choice(onsets) + rng.choice(vowels) + rng.choice(codas) for _ in range(k)))
    return out


def corpus():
    rng = random.Random(20220101)
    names = syllable_names(rng, 1500)
    nouns = NOUNS + names
    for i in range(60000):
        t = TEMPLATES[i % len(TEMPLATES)]
        yield t.format(
            adj=rng.choice(ADJECTIVES), adj2=rng.choice(ADJECTIVES),
            color=rng.choice(COLORS), color2=rng.choice(COLORS),
            noun=rng.choice(nouns), noun2=rng.choice(nouns), noun3=rng.choice(NOUNS),
            noun4=rng.choice(names), verb=rng.choice(VERBS), place=rng.choice(PLACES),
            style=rng.choice(STYLES), style2=rng.choice(STYLES),
            num=rng.choice([str(rng.randint(1, 12)), str(rng.randint(10, 999)), "two", "three"]),
            year=rng.randint(1800, 2099),
        )
    # Words without the leading space (the first word of un-normalized text) and plain lines.
    for w in itertools.chain(NOUNS, ADJECTIVES, COLORS, VERBS):
        yield w
        yield w.capitalize() + " " + w.upper()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "..", "models", "tiny"))
    args = ap.parse_args()

    tok = ByteLevelBPETokenizer(add_prefix_space=False)
    tok.train_from_iterator(corpus(), vocab_size=VOCAB_SIZE - 1, min_frequency=2,
                            special_tokens=SPECIALS, show_progress=False)
    vocab = tok.get_vocab()
    assert [vocab[s] for s in SPECIALS] == [0, 1, 2, 3], "special ids out of BART order"
    assert len(vocab) == VOCAB_SIZE - 1, f"corpus too small: {len(vocab)} ids"
    vocab["<mask>"] = len(vocab)

    os.makedirs(args.out, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        tok.save_model(tmp)
        with open(os.path.join(tmp, "merges.txt"), encoding="utf-8") as f:
            merges = f.read()
    assert merges.startswith("#version")
    with open(os.path.join(args.out, "merges.txt"), "w", encoding="utf-8", newline="\n") as f:
        f.write(merges)
    with open(os.path.join(args.out, "vocab.json"), "w", encoding="utf-8", newline="\n") as f:
        json.dump(dict(sorted(vocab.items(), key=lambda kv: kv[1])), f, ensure_ascii=False)
    print(f"vocab {len(vocab)} ids, {merges.count(chr(10)) - 1} merges → {os.path.normpath(args.out)}")


if __name__ == "__main__":
    main()
