#!/usr/bin/env python3
"""make_prompts.py — writes tests/golden/text/prompts.jsonl, the text-parity corpus.

Each line is {"category": ..., "prompt": ...}, written as ASCII JSON so that no reader splits
a line on U+2028 or U+0085. The output is deterministic (one seeded random.Random, fixed word
lists, fixed order). Prompts mix real-looking captions built from templates with hand-written
edge cases, one category per normaliser concern.

It also writes the tiny word-frequency file that the hashtag splitter uses in tests.

    python3 tools/reference/make_prompts.py [--out tests/golden/text/prompts.jsonl]
                                            [--wiki-out models/tiny/enwiki-words-frequency.txt]
"""

import argparse
import json
import random

SEED = 20220621
PER_CATEGORY = 120

ADJ = """red blue green yellow purple orange black white golden silver tiny huge old ancient
modern futuristic cozy rainy sunny foggy snowy glowing broken wooden metallic glass
colorful dark bright quiet busy abandoned beautiful ugly fluffy shiny rusty happy sad angry
sleepy giant little elegant strange magical medieval victorian cyberpunk minimalist""".split()
NOUN = """cat dog horse bicycle car house castle tree mountain lake river robot astronaut
dragon teapot chair table lamp city street forest beach boat train airplane owl fox bear
penguin elephant giraffe lion tiger rabbit apple banana pizza burger cake flower garden
bridge tower lighthouse village market library kitchen window door clock guitar piano
violin painting sculpture statue portrait landscape spaceship planet moon sun star cloud
volcano desert island waterfall skyscraper cottage cabin temple church bus truck tractor""".split()
PLACE = """the beach|a forest|the moon|mars|a city street|the ocean|a mountain top|a
kitchen|a library|the desert|a snowy field|a busy market|outer space|a small village|a
rainy night|the sunset|a neon city|an old castle|a flower garden|the north pole""".split("|")
PREP = "on|in|at|near|under|above|behind|inside|beside|over".split("|")
STYLE = """oil painting|watercolor|digital art|pencil sketch|pixel art|photograph|3d
render|studio ghibli style|trending on artstation|by van gogh|in the style of picasso|
unreal engine|cinematic lighting|8k|highly detailed|concept art|low poly|anime style|
ukiyo-e|vaporwave""".split("|")
VERB = "riding|eating|reading|playing|holding|wearing|painting|chasing|watching|sitting on".split("|")
ACCENTED = """café crème brûlée naïve résumé façade jalapeño piñata über Zürich São Paulo
Ærøskøbing Straße Fußball smörgåsbord Åland Øresund Kraków Łódź Dvořák Škoda Ελλάδα
Москва Київ déjà vu coöperate El Niño Québec Montréal Besançon Gdańsk İstanbul
Reykjavík Þingvellir mañana piñón Čapek Ñandú œuvre Æsir ĳssel Ångström façades
Hà Nội Phở Việt Nam Đà Nẵng ﬁne ﬂower Ⅻ ½ ¼ ³ ™ © ® € £ ¥ ° µ ×""".split()
CJK = """猫 狗 富士山 東京 北京 上海 桜の花 山の上の城 ラーメン すし カタカナ ひらがな
漢字 서울 한국어 김치 고양이 강아지 龍 鳳凰 茶 月 花見 日本庭園 万里の長城 中国画 水墨画
ＡＢＣ １２３ 全角 「引用」 『書名』 【注意】 ～ 、 。 ・ ！ ？ （括弧）""".split()
EMOJI = ["😀", "😂", "🐱", "🐶", "🌅", "🚀", "❤️", "❤", "👍", "👍🏽", "👩‍💻", "👨‍👩‍👧‍👦",
         "🏳️‍🌈", "🇫🇷", "🇯🇵", "🇺🇸", "✨", "🔥", "🎉", "🍕", "☕", "⚽", "🌍", "🦄",
         "🤖", "👻", "🎨", "🌈", "⭐", "🌙", "#️⃣", "1️⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿", "👋🏿", "🧑🏻‍🚀",
         "🙂", "☀️", "☀", "✌🏼", "🤷‍♀️", "©️", "™️", "↔️", "🫠", "🪐", "🐈‍⬛", "😶‍🌫️",
         "❤️‍🔥", "🧔‍♂️", "💯", "🆗", "🔟", "🕵️‍♂️", "👁️‍🗨️", "🏃🏾‍♀️‍➡️"]
COMMON = """the of and a to in is you that it he was for on are as with his they at be this
have from or one had by word but not what all were we when your can said there use an each
which she do how their if will up other about out many then them these so some her would
make like him into time has look two more write go see number no way could people my than
first water been call who oil its now find long down day did get come made may part""".split()

# The tiny word-frequency file (models/tiny/enwiki-words-frequency.txt) for hashtag
# splitting: the real file's format ("word count" per line, most frequent first; dalle-mini
# uses only the rank). Common English words in rough frequency order, then every template
# word, then words that the hashtag prompts are made of.
FREQUENT = """the of and in to a was is for as on by with he at that from his it an were are
which this be or has also had first one their its new after but who not they have her she two
been other when there all during into school time may years more most only over city some
world would where later up such used many can state about national out known university united
then made part age film year being between three under well series south through so no north
team him de would these people game while before high since both season american however
general any each before early them against music including de government will would four
than life its each known five best during album family because following last several through
later another main second number could around name well city new york long work way day back
said make like into out time has look more write go see number no way could people my than
water been call who oil now find down did get come made may long little very after words just
where most know take place years live me back give only little round man show every good me
our under name very through just form sentence great think say help low line differ turn cause
much mean before move right boy old too same tell does set three want air well also play small
end put home read hand port large spell add even land here must big high such follow act why
ask men change went light kind off need house picture try us again animal point mother world
near build self earth father head stand own page should country found answer grow study still
learn plant cover food sun four between state keep eye never last let thought city tree cross
farm hard start might story saw far sea draw left late run don't while press close night real
life few north open seem together next white children begin got walk example ease paper group
always music those both mark often letter until mile river car feet care second book carry took
science eat room friend began idea fish mountain stop once base hear horse cut sure watch color
face wood main enough plain girl usual young ready above ever red list though feel talk bird
soon body dog family direct pose leave song measure door product black short numeral class wind
question happen complete ship area half rock order fire south problem piece told knew pass since
top whole king space heard best hour better true during hundred five remember step early hold
west ground interest reach fast verb sing listen six table travel less morning ten simple
several vowel toward war lay against pattern slow center love person money serve appear road map
rain rule govern pull cold notice voice unit power town fine certain fly fall lead cry dark
machine note wait plan figure star box noun field rest correct able pound done beauty drive
stood contain front teach week final gave green oh quick develop ocean warm free minute strong
special mind behind clear tail produce fact street inch multiply nothing course stay wheel full
force blue object decide surface deep moon island foot system busy test record boat common gold
possible plane stead dry wonder laugh thousand ago ran check game shape equate hot miss brought
heat snow tire bring yes distant fill east paint language among grand ball yet wave drop heart
am present heavy dance engine position arm wide sail material size vary settle speak weight
general ice matter circle pair include divide syllable felt perhaps pick sudden count square
reason length represent art subject region energy hunt probable bed brother egg ride cell
believe fraction forest sit race window store summer train sleep prove lone leg exercise wall
catch mount wish sky board joy winter sat written wild instrument kept glass grass cow job edge
sign visit past soft fun bright gas weather month million bear finish happy hope flower clothe
strange gone jump baby eight village meet root buy raise solve metal whether push seven
paragraph third shall held hair describe cook floor either result burn hill safe cat century
consider type law bit coast copy phrase silent tall sand soil roll temperature finger industry
value fight lie beat excite natural view sense ear else quite broke case middle kill son lake
moment scale loud spring observe child straight consonant nation dictionary milk speed method
organ pay age section dress cloud surprise quiet stone tiny climb cool design poor lot experiment
bottom key iron single stick flat twenty skin smile crease hole trade melody trip office receive
row mouth exact symbol die least trouble shout except wrote seed tone join suggest clean break
lady yard rise bad blow oil blood touch grew cent mix team wire cost lost brown wear garden equal
sent choose fell fit flow fair bank collect save control decimal gentle woman captain practice
separate difficult doctor please protect noon whose locate ring character insect caught period
indicate radio spoke atom human history effect electric expect crop modern element hit student
corner party supply bone rail imagine provide agree thus capital won't chair danger fruit rich
thick soldier process operate guess necessary sharp wing create neighbor wash bat rather crowd
corn compare poem string bell depend meat rub tube famous dollar stream fear sight thin triangle
planet hurry chief colony clock mine tie enter major fresh search send yellow gun allow print
dead spot desert suit current lift rose continue block chart hat sell success company subtract
event particular deal swim term opposite wife shoe shoulder spread arrange camp invent cotton
born determine quart nine truck noise level chance gather shop stretch throw shine property
column molecule select wrong gray repeat require broad prepare salt nose plural anger claim
continent oxygen sugar death pretty skill women season solution magnet silver thank branch match
suffix especially fig afraid huge sister steel discuss forward similar guide experience score
apple bought led pitch coat mass card band rope slip win dream evening condition feed tool total
basic smell valley nor double seat arrive master track parent shore division sheet substance
favor connect post spend chord fat glad original share station dad bread charge proper bar offer
segment slave duck instant market degree populate chick dear enemy reply drink occur support
speech nature range steam motion path liquid log meant quotient teeth shell neck photo day
beautiful instagram new york city throwback thursday filter photography golden hour monday
motivation happy year quick brown fox jumps lazy insta vibes porn cats dogs tag street tbt
love travel art nature summer isthis real double under score upper case dash""".split()


def caption(r):
    forms = [
        lambda: f"a {r.choice(ADJ)} {r.choice(NOUN)} {r.choice(PREP)} {r.choice(PLACE)}",
        lambda: f"{r.choice(ADJ)} {r.choice(NOUN)} {r.choice(VERB)} a {r.choice(NOUN)}",
        lambda: f"a {r.choice(NOUN)} {r.choice(PREP)} {r.choice(PLACE)}, {r.choice(STYLE)}",
        lambda: f"an {r.choice(ADJ)} {r.choice(NOUN)} made of {r.choice(NOUN)}s",
        lambda: f"{r.choice(NOUN)} and {r.choice(NOUN)} {r.choice(PREP)} {r.choice(PLACE)}",
        lambda: f"portrait of a {r.choice(ADJ)} {r.choice(NOUN)}, {r.choice(STYLE)}, {r.choice(STYLE)}",
    ]
    return r.choice(forms)()


def cat_plain(r):
    fixed = ["sunset over a lake in the mountains", "a red bicycle leaning against a brick wall",
             "Donald Trump in Animal Crossing", "", " ", "a", "cat", "x" * 3, "the the the"]
    return fixed + [caption(r) for _ in range(PER_CATEGORY - len(fixed))]


def cat_mixed_case(r):
    fixed = ["A RED CAR", "Hello World", "iPhone on a MacBook", "NASA Astronaut On The Moon",
             "ÉCOLE FRANÇAISE", "İSTANBUL", "ΣΊΣΥΦΟΣ", "STRASSE vs STRAẞE", "ǅungla", "ＡＢＣ Ｄｅｆ"]
    out = list(fixed)
    while len(out) < PER_CATEGORY:
        c = caption(r)
        mode = r.randrange(4)
        if mode == 0:
            c = c.upper()
        elif mode == 1:
            c = c.title()
        elif mode == 2:
            c = "".join(ch.upper() if r.random() < 0.5 else ch for ch in c)
        else:
            c = " ".join(w.capitalize() if r.random() < 0.5 else w for w in c.split(" "))
        out.append(c)
    return out


PUNCT = list("()[].,|:;?!=+~-/{}") + ["...", "?!", "--", " - ", ", ,", "(a)", "[b]", "{c}"]


def cat_punctuation(r):
    fixed = ["a-b-c", "a-b-c-d-e", "well-known state-of-the-art model", "hello, world!",
             "what?! no way...", "(a cat) [in a hat] {on a mat}", "a|b|c", "x=y+z~w",
             "end.", ".start", ",,,a,,,", "a , , , b", "-a-", "a--b", "a - b", "e.g. this",
             "U.S.A.", "3.14", "a.b.c.d", "...", ",", "!", "(", "a;b:c", "Mr. Smith; Dr. Who",
             "co-op", "x-ray", "T-shirt", "one-on-one", "-", "a -b", "a- b"]
    out = list(fixed)
    while len(out) < PER_CATEGORY:
        words = caption(r).split(" ")
        for _ in range(r.randint(1, 4)):
            i = r.randrange(len(words) + 1)
            words.insert(i, r.choice(PUNCT))
        sep = r.choice([" ", " ", ""])
        out.append(sep.join(words) if sep else " ".join(words).replace(" ,", ","))
    return out


def cat_digits_commas(r):
    fixed = ["1,000", "1,000,000 stars", "1,000,000,000", "12,345,678 people", "1,00", "1,0000",
             "3,14159", "a,123", "1,abc", "10,000 leagues under the sea", "2,500.50 dollars",
             "1,234,5678", "0,001", "1,2,3,4", "123,456,789,012", "v1.2.3", "3.5 mm", "1.000.000",
             "year 2022", "4k 8k 16k", "100%", "1st 2nd 3rd 4th", "7 dwarfs", "99 red balloons",
             "1,000s of birds", "1, 000", "1 ,000", "9,9999,999"]
    out = list(fixed)
    while len(out) < PER_CATEGORY:
        n = r.choice([r.randrange(1000, 10 ** 9), r.randrange(10, 1000), r.randrange(10 ** 9, 10 ** 12)])
        s = f"{n:,}" if r.random() < 0.7 else f"{n:,}".replace(",", ".")
        out.append(r.choice([f"{s} {r.choice(NOUN)}s {r.choice(PREP)} {r.choice(PLACE)}",
                             f"a {r.choice(NOUN)} worth ${s}", f"{s}", f"{s},{r.randrange(1000):03d}",
                             f"{r.randrange(100)}.{r.randrange(100)} {r.choice(NOUN)}"]))
    return out


def cat_urls(r):
    fixed = ["http://example.com", "see https://example.com/a?b=c&d=e a cat",
             "a cat https://t.co/abc123", "httpfoo bar", "http", "www.example.com is a site",
             "visit http://a.b/c.", "(http://x.y)", "http://a http://b c", "HTTPS://EXAMPLE.COM/X",
             "ftp://files.example.org/pub", "link:http://x.org,next", "mailto:someone@example.com",
             "a\thttp://tab.example\tb", "http://例え.jp/パス", "https://example.com/😀 smile",
             "urlhttp://glued.com", "http://a.com/%20space"]
    out = list(fixed)
    while len(out) < PER_CATEGORY:
        host = r.choice(["example.com", "flickr.com", "i.imgur.com", "pbs.twimg.com", "en.wikipedia.org"])
        path = "/".join(r.choice(NOUN) for _ in range(r.randint(0, 3)))
        url = f"{r.choice(['http', 'https'])}://{host}/{path}"
        if r.random() < 0.3:
            url += f"?id={r.randrange(10 ** 6)}&s={r.choice(ADJ)}"
        c = caption(r)
        out.append(r.choice([f"{c} {url}", f"{url} {c}", f"{c} ({url})", f"{c}, source: {url}."]))
    return out


ENTITIES = ["&amp;", "&lt;", "&gt;", "&quot;", "&#39;", "&#x27;", "&nbsp;", "&eacute;", "&copy;",
            "&amp;amp;", "&amp;lt;", "&#8217;", "&#x2019;", "&hellip;", "&mdash;", "&ndash;",
            "&rsquo;", "&ldquo;", "&rdquo;", "&euro;", "&pound;", "&trade;", "&reg;", "&deg;",
            "&frac12;", "&times;", "&amp", "&lt", "&gt", "&copy", "&eacute", "&AElig;", "&szlig;"]


def cat_html_entities(r):
    fixed = ["Tom &amp; Jerry", "fish &amp;amp; chips", "a &lt;b&gt; tag", "&quot;quoted&quot;",
             "it&#39;s", "it&#x27;s", "caf&eacute;", "&#0;", "&#128;", "&#x80;", "&#150;", "&#x9F;",
             "&#x110000;", "&#1114111;", "&#xD800;", "&#55296;", "&#1;", "&#x0B;", "&#x7F;",
             "&#65;&#66;&#67;", "&#x41;&#X42;", "&#65", "&#x41", "&#;", "&#x;", "&#99999999999999;",
             "&notit;", "&notin;", "&not", "&ampfoo", "&amp;foo", "&AMP;", "&Amp;", "&unknown;",
             "&", "& ", "&&", "a & b", "&#", "&#x", "&lt;&lt;&gt;&gt;", "&amp;#39;", "&amp;quot;",
             "&#38;#38;#38;", "&nbsp;&nbsp;two spaces", "&NewLine;", "&Tab;x", "&zwj;", "&shy;",
             "&acE;", "&NotEqualTilde;", "&fjlig;", "&bne;", "&ThickSpace;", "&#x1F600;",
             "&#128512;", "&lt;person&gt;", "&#13;&#10;", "&#xd;", "&#150", "&#0000065;",
             "&#x000041;", "&ltx", "&gtfoo", "&amplifier", "&copyright;", "&eacuteb"]
    out = list(fixed)
    while len(out) < PER_CATEGORY:
        words = caption(r).split(" ")
        for _ in range(r.randint(1, 3)):
            words.insert(r.randrange(len(words) + 1), r.choice(ENTITIES))
        out.append(" ".join(words))
    return out


def cat_html_tags(r):
    fixed = ["<b>bold</b> cat", "<a href='http://x.com'>link</a>", "line<br/>break", "line<br>break",
             "a < b > c", "<<b>>", "<>", "< >", "<p>para</p><p>two</p>", "<img src=\"a.png\" alt=\"x\">",
             "1 < 2", "2 > 1", "<i>it's</i>", "<person>", "<div\nclass=x>multi</div>",
             "&lt;b&gt;escaped&lt;/b&gt;", "<!-- comment -->", "<a<b>c>", "text <unclosed",
             "<span style=\"color:red\">red</span> car", "<3 love", "a <- b", "<em>é</em>",
             "<tag>[1]</tag>", "<x>", "<>>"]
    out = list(fixed)
    tags = ["b", "i", "em", "strong", "span", "p", "div", "u", "small", "h1"]
    while len(out) < PER_CATEGORY:
        words = caption(r).split(" ")
        i = r.randrange(len(words))
        j = r.randrange(i, len(words))
        t = r.choice(tags)
        words[i] = f"<{t}>" + words[i]
        words[j] = words[j] + f"</{t}>"
        if r.random() < 0.3:
            words.insert(r.randrange(len(words) + 1), "<br/>")
        out.append(" ".join(words))
    return out


def cat_accents(r):
    fixed = ["café", "crème brûlée", "naïve résumé", "Straße", "Ærøskøbing", "ﬁne ﬂower",
             "Ⅻ o'clock", "½ cup", "x³", "™", "Łódź", "Ελλάδα", "Москва", "İstanbul", "Hà Nội",
             "e\u0301", "a\u0308", "n\u0303", "o\u0302\u0323", "\u0301", "Å", "Å", "ǅ", "ĳ", "ŉ",
             "ẞ", "ß", "µ", "Ω", "K", "Ǆ", "ﬀ", "ﬃ", "ſ", "ǰ", "ℌ", "ℍ", "ⓐⓑⓒ", "①②③", "⑴", "㎏",
             "Þór", "ð", "œ", "Œ", "ø", "đ", "ł", "ı", "ħ", "ŋ", "ĸ", "ə", "ʃ", "ɛ", "×÷", "¿qué?", "¡olé!"]
    out = list(fixed)
    while len(out) < PER_CATEGORY:
        words = caption(r).split(" ")
        for _ in range(r.randint(1, 3)):
            words.insert(r.randrange(len(words) + 1), r.choice(ACCENTED))
        out.append(" ".join(words))
    return out


def cat_cjk(r):
    fixed = ["猫", "富士山の夕日", "一只猫坐在桌子上", "서울의 밤", "東京タワー at night", "ラーメン 🍜",
             "「こんにちは」", "ＡＢＣ１２３", "全角　スペース", "中文，标点。", "한국어 텍스트",
             "Ｈｅｌｌｏ　Ｗｏｒｌｄ！", "ｶﾀｶﾅ", "〜", "〇", "㐀", "𠀀", "𪚥", "丂", "ー", "ゝゞ", "ㄅㄆㄇ",
             "ꀀ", "ᄀ", "가각", "ࠀ", "ꓐ"]
    out = list(fixed)
    while len(out) < PER_CATEGORY:
        mode = r.randrange(3)
        if mode == 0:
            out.append("".join(r.choice(CJK) for _ in range(r.randint(1, 5))))
        elif mode == 1:
            words = caption(r).split(" ")
            words.insert(r.randrange(len(words) + 1), r.choice(CJK))
            out.append(" ".join(words))
        else:
            out.append(" ".join(r.choice(CJK) for _ in range(r.randint(2, 6))))
    return out


def cat_emoji(r):
    fixed = ["😀", "a cat 🐱 on a mat", "👩‍💻 coding", "family 👨‍👩‍👧‍👦", "🏳️‍🌈 flag", "🇫🇷🇯🇵",
             "👍🏽", "👍🏽👍", "❤️❤", "#️⃣", "1️⃣2️⃣", "🏴󠁧󠁢󠁳󠁣󠁴󠁿 scotland", "☀️ sunny", "☀ sunny",
             "😀😀😀😀", "😀😀😀😀😀", "🇺", "🏽", "\u200d", "a\u200db", "\ufe0f", "x\ufe0f",
             "🤷‍♀️", "🏃🏾‍♀️‍➡️", "©", "®", "™", "↔", "🫠", "🐈‍⬛", "😶‍🌫️", ":smile:", ":)",
             "<3", "🇦🇦", "👨‍👩", "👩‍❤️‍👨", "🧑‍🤝‍🧑", "👋🏿👋🏻", "*️⃣", "0⃣", "🅰️"]
    out = list(fixed)
    while len(out) < PER_CATEGORY:
        words = caption(r).split(" ")
        for _ in range(r.randint(1, 3)):
            e = r.choice(EMOJI)
            if r.random() < 0.3:
                words[r.randrange(len(words))] += e
            else:
                words.insert(r.randrange(len(words) + 1), e)
        out.append(" ".join(words))
    return out


WS = ["\t", "\n", "\r\n", "\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\xa0",
      "\u2003", "\u3000", "\u2028", "\u2029", "\u200b", "  ", "   ", " \t ", "\n\n", "\u202f",
      "\u2009", "\u180e", "\ufeff", "\x00", "\x07", "\x1b", "\x7f", "\x80", "\x9f"]


def cat_whitespace(r):
    fixed = ["a\tb", "a\nb", "line one\nline two", "\t\tindented", "trailing\n", "\n", "\t",
             "   ", "a  b   c", "a\r\nb", "a\x0bb", "a\x0cb", "a\x1cb", "a\x1fb", "a\x85b", "a\xa0b",
             "a\u3000b", "a\u2028b", "a\u200bb", "\ufeffbom", "a\x00b", "a\x1b[31mred\x1b[0m",
             "a\x7fb", "a\x80b", "\t,\t", " , a , ", "\n\n\nx\n\n\n"]
    out = list(fixed)
    while len(out) < PER_CATEGORY:
        words = caption(r).split(" ")
        out.append("".join(w + r.choice(WS + [" "] * 8) for w in words).rstrip(" ")
                   + (r.choice(WS) if r.random() < 0.3 else ""))
    return out


HASHWORDS = ["sunset", "beautifulday", "ThrowbackThursday", "nofilter", "photooftheday", "love",
             "instagood", "catsofinstagram", "travel", "art", "nature", "2022", "summer2021",
             "NewYorkCity", "foodporn", "tbt", "redcar", "bluehouse", "oldtree", "goldenhour",
             "streetphotography", "lake", "themountains", "bigredcat", "a", "x", "isthisreal",
             "catdog", "happynewyear", "mondaymotivation"]


def cat_hashtags(r):
    fixed = ["#sunset", "#BeautifulDay at the beach", "#a_b", "#love's", "#2022", "#100days",
             "#summer2021vibes", "#", "##double", "#tag1 #tag2 #tag3", "a#b", "#catsofinstagram",
             "#don't", "#it'sfine", "#123abc456", "#abc'", "#'s", "#l'amour", "#café", "#東京",
             "#😀", "#-dash", "#under_score_tag", "#UPPERCASE", "#thequickbrownfoxjumpsoverthelazydog",
             "#zzzzqqqqxxxx", "#a1b2c3", "#1,000", "#x.y", "#a/b", "#12/25", "#ok!", "#it's's",
             "#s's", "#'''", "#a''b", "#the'sun", "#1'2", "#catsdogs's", "#abc'1", "#'", "#''",
             "#don'tstop", "#rock'n'roll", "#y'all"]
    out = list(fixed)
    while len(out) < PER_CATEGORY:
        c = caption(r)
        tags = " ".join("#" + r.choice(HASHWORDS) for _ in range(r.randint(1, 4)))
        out.append(r.choice([f"{c} {tags}", f"{tags} {c}", f"#{c.replace(' ', '')}"]))
    return out


def cat_person_tokens(r):
    fixed = ["<person>", "<person> and <person>", "<person>, <person> and <person> at a party",
             "<PERSON> on a beach", "<Person>s", "<person><person>", "<person> and and <person>",
             "<person>,,, and <person>", "<person> andand <person>", "<person> anda <person>",
             "photo of <person>", "<person> with <person>", "<person>\n<person>", "<person>and<person>",
             "< person >", "<persons>", "<person", "person>", "&lt;person&gt; smiling",
             "<person> , <person> , <person>", "<person>  and  <person> and <person>", "<person> [1]",
             "[1] <person>", "<person> <person> <person> <person>", "<person>s and <person>'s dog",
             "<person>\t,\tand\t<person>", "<PERSON>AND<PERSON>"]
    out = list(fixed)
    while len(out) < PER_CATEGORY:
        n = r.randint(1, 3)
        people = r.choice([", ", " and ", " with ", ", and ", " "]).join(["<person>"] * n)
        out.append(r.choice([f"{people} {r.choice(VERB)} a {r.choice(NOUN)}",
                             f"a photo of {people} {r.choice(PREP)} {r.choice(PLACE)}",
                             f"{caption(r)} with <person>"]))
    return out


def cat_long(r):
    out = []
    mixes = [lambda: caption(r), lambda: r.choice(ACCENTED), lambda: r.choice(EMOJI),
             lambda: r.choice(ENTITIES), lambda: "#" + r.choice(HASHWORDS), lambda: r.choice(PUNCT),
             lambda: f"{r.randrange(10 ** 6):,}", lambda: r.choice(CJK), lambda: r.choice(WS),
             lambda: r.choice(COMMON)]
    for k in range(PER_CATEGORY):
        parts, size = [], 0
        while size < 1000:
            p = caption(r) if k % 3 == 0 else r.choice(mixes)()
            parts.append(p)
            size += len(p) + 1
        out.append(" ".join(parts)[:1000])
    return out


def cat_apostrophes_quotes(r):
    fixed = ["it's", "don't", "I'm", "we'll", "they're", "you've", "he'd", "'quoted'", "\"double\"",
             "`backtick`", "‘curly single’", "“curly double”", "rock 'n' roll", "'s", "''", "'''",
             "\"\"\"", "a ' b", "a \" b", "can't won't shouldn't", "the cat's toy", "the cats' toys",
             "it'sa", "o'clock", "'tis", "'twas", "'m", "x'll've", "it's's", "l'amour", "'ll",
             "the '80s", "ma'am", "'re'", "''s", "rock'n'roll", "she said \"hi\"", "\"a\" \"b\"",
             "\" , \"", ",\",", "it’s", "don’t", "„Anführungszeichen“", "«guillemets»", "‹single›",
             "′prime″", "'T", "IT'S", "it'S", "x'd", "x'dd", "x'3", "'_", "'s_", "'ve1", "a'b'c'd"]
    out = list(fixed)
    while len(out) < PER_CATEGORY:
        c = caption(r)
        q = r.choice(["'", "\"", "`", "‘", "’", "“", "”"])
        words = c.split(" ")
        i = r.randrange(len(words))
        words[i] = r.choice([f"{q}{words[i]}{q}", f"{words[i]}'s", f"{words[i]}n't",
                             f"{words[i]}'ll", f"{words[i]}'{r.choice(['re', 've', 'd', 'm', 'x'])}"])
        out.append(" ".join(words))
    return out


def cat_dates_slashes(r):
    fixed = ["12/25/2020", "1/2 cup", "and/or", "a / b", "24/7", "1/2/3/4", "2022/06/21", "/",
             "//", "a/b/c", "http://a/b", "w/ cheese", "50/50", "3/4ths", "1 /2", "1/ 2", "x/1",
             "1/x", "9/11", "10/10 would recommend", "on 03/04/2021 at 10:30", "1/", "/1",
             "path/to/file.png", "AC/DC", "1//2", "1/2/", "12/31/1999 party"]
    out = list(fixed)
    while len(out) < PER_CATEGORY:
        d = f"{r.randint(1, 12)}/{r.randint(1, 31)}/{r.randint(1900, 2030)}"
        out.append(r.choice([f"{caption(r)} on {d}", f"{d} {caption(r)}", f"{caption(r)}/{r.choice(NOUN)}",
                             f"{r.randint(1, 9)}/{r.randint(2, 9)} of a {r.choice(NOUN)}"]))
    return out


SPECIAL = list("%&/$*-_#\\@^<>") + ["%%", "&&", "$$", "**", "__", "\\\\", "--", "_-_"]


def cat_special_chars(r):
    fixed = ["100%", "50% off", "rock & roll", "$5", "5$", "2*3", "a*b*c", "snake_case_name",
             "C:\\path\\to", "a\\b", "#1", "a_b-c", "x-y_z", "@user", "a^b", "a@b.com", "%", "&",
             "$", "*", "_", "\\", "-", "_-_", "--a--", "a--b--c", "a-b_c-d", "foo-_bar", "-5", "5-",
             "a - b", "a-", "-a", "é-è", "1-2", "a-1", "_a_", "**bold**", "$$$", "100%%", "a&b&c",
             "1/2&3%4$5*6", "price: $1,000.00", "c++", "c#", "f#", "10 * 5 = 50", "~home", "a|b"]
    out = list(fixed)
    while len(out) < PER_CATEGORY:
        words = caption(r).split(" ")
        for _ in range(r.randint(1, 3)):
            s = r.choice(SPECIAL)
            i = r.randrange(len(words))
            words[i] = r.choice([s + words[i], words[i] + s, words[i] + s + r.choice(NOUN)])
        out.append(" ".join(words))
    return out


def cat_repeated_chars(r):
    fixed = ["soooooo cute", "!!!!!!", "....", "1111111", "VIII", "viiii", "aaaa", "aaa", "zzzzzzzz",
             "hmmmm", "nooooo!!!!", "-----", "_____", "     ", "😀😀😀😀", "ééééé", "abababab",
             "aaaabbbbcccc", "......ok", "????", ",,,,", "''''", "\"\"\"\"", "\t\t\t\t", "####",
             "xtokxxtokx", "xtokxdotxtokx", "a.b.c.d.e", "........a", "wow!!!!", "1..2", "a....b",
             "0000", "heyyyyy", "lol " * 5, "ha" * 8, "a" * 50, "\\\\\\\\", "&&&&", "%%%%", "$$$$",
             "****", "~~~~", "====", "||||", "::::", ";;;;", "++++", "{{{{", "}}}}"]
    out = list(fixed)
    while len(out) < PER_CATEGORY:
        words = caption(r).split(" ")
        i = r.randrange(len(words))
        w = words[i]
        j = r.randrange(len(w))
        words[i] = w[:j] + w[j] * r.randint(2, 9) + w[j + 1:]
        if r.random() < 0.3:
            words.append(r.choice("!?.,") * r.randint(2, 8))
        out.append(" ".join(words))
    return out


def cat_wiki_refs(r):
    fixed = ["[1] a cat", "a cat [2]", " [12] a cat [3] ", "[1][2] cat", "cat [1][2]", "[a] cat",
             "[] cat", "[1]", "[1] ", "  [99]  x  [100]  ", "a [1] b", "[1]\n", "\t[1]x", "x[1]"]
    out = list(fixed)
    while len(out) < PER_CATEGORY // 2:
        c = caption(r)
        out.append(r.choice([f"[{r.randint(1, 99)}] {c}", f"{c} [{r.randint(1, 99)}]", f"{c}[{r.randint(1, 9)}]"]))
    return out


MOJIBAKE_WORDS = ["café", "naïve", "à la mode", "crème brûlée", "Straße", "“quoted”", "it’s", "…", "—",
                  "€5", "™", "Zürich", "São Paulo", "jalapeño", "Москва", "Ελλάδα", "Łódź", "½ cup", "25°C",
                  "中文", "😀", "👍🏽", "\xa0", "©", "Ærøskøbing"]


def cat_mojibake(r):
    """UTF-8 read through a single-byte code page: what ftfy's fix_encoding repairs."""
    def garble(text):
        enc = r.choice(["cp1252", "latin-1", "cp1251", "cp1250", "iso-8859-2", "mac_roman", "cp437"])
        out = text.encode("utf-8").decode(enc, errors="replace")
        if r.random() < 0.2:
            out = out.replace("\xa0", " ")
        return garble(out) if r.random() < 0.15 else out

    fixed = ["cafÃ©", "Ã  la mode", "â€œquotedâ€\x9d", "itâ€™s", "SÃ£o Paulo", "Ã¼ber", "ðŸ˜€",
             "Ã\xa0 la carte", "Ã la carte", "voilÃ  le travail", "Ã s vezes", "Ãquele", "ÃƒÂ©",
             "â€œ like this â€\ufffd", "sÃ³", "Ã\x81", "\x80\x81\x9d", "Ã\u2019", "Ð\xa0Ð¾ÑÑÐ¸Ñ",
             "cafe\u0301 ok", "l’Ã©tÃ©", "Ã©tÃ© 2022 ðŸŒž", "mixed cafÃ© and café", "\xc3\xa9"]
    out = list(fixed)
    while len(out) < PER_CATEGORY:
        words = caption(r).split(" ")
        for _ in range(r.randint(1, 3)):
            words.insert(r.randrange(len(words) + 1), r.choice(MOJIBAKE_WORDS))
        text = " ".join(words)
        out.append(garble(text) if r.random() < 0.8 else " ".join(
            garble(w) if r.random() < 0.5 else w for w in text.split(" ")))
    return out


CATEGORIES = [
    ("plain", cat_plain), ("mixed_case", cat_mixed_case), ("punctuation", cat_punctuation),
    ("digits_commas", cat_digits_commas), ("urls", cat_urls), ("html_entities", cat_html_entities),
    ("html_tags", cat_html_tags), ("accents", cat_accents), ("cjk", cat_cjk), ("emoji", cat_emoji),
    ("whitespace", cat_whitespace), ("hashtags", cat_hashtags), ("person_tokens", cat_person_tokens),
    ("long", cat_long), ("apostrophes_quotes", cat_apostrophes_quotes),
    ("dates_slashes", cat_dates_slashes), ("special_chars", cat_special_chars),
    ("repeated_chars", cat_repeated_chars), ("wiki_refs", cat_wiki_refs),
    ("mojibake", cat_mojibake),  # keep new categories last: earlier lines stay as they were
]


def write_word_frequencies(path):
    """One "word count" line per distinct lower-case word, most frequent first (Zipf counts)."""
    seen = []
    for w in FREQUENT + COMMON + ADJ + NOUN + " ".join(PLACE + PREP + STYLE + VERB).split():
        w = w.lower()
        if w.isascii() and w.replace("'", "").isalnum() and w not in seen:
            seen.append(w)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        for rank, w in enumerate(seen):
            f.write(f"{w} {10_000_000 // (rank + 1)}\n")
    print(f"wrote {len(seen)} words to {path}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="tests/golden/text/prompts.jsonl")
    ap.add_argument("--wiki-out", default="models/tiny/enwiki-words-frequency.txt")
    args = ap.parse_args()
    write_word_frequencies(args.wiki_out)
    r = random.Random(SEED)
    n = 0
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        for name, fn in CATEGORIES:
            for p in fn(r):
                f.write(json.dumps({"category": name, "prompt": p}, ensure_ascii=True) + "\n")
                n += 1
    print(f"wrote {n} prompts to {args.out}")


if __name__ == "__main__":
    main()
