/* embed.h — embedding a data file into a binary at build time.
 *
 * DALLE_EMBED(sym, path) embeds `path` (relative to the repository root, where the compiler
 * runs) as the byte range [sym, sym_end) in .rodata; sym_end is followed by one NUL byte. The
 * symbols are local to the translation unit that uses the macro at file scope; the Makefile
 * makes that object depend on the file. They are declared hidden so that the compiler
 * addresses them PC-relative: through the GOT (the default for extern data in a PIE)
 * aarch64's linker gives a local symbol plus offset the entry of the section start, so sym
 * and sym_end would both read the start of .rodata.
 */
#ifndef DALLE_COMMON_EMBED_H
#define DALLE_COMMON_EMBED_H

#define DALLE_EMBED(sym, path)                                                                     \
    __asm__(".section .rodata\n.balign 16\n" #sym ":\n.incbin \"" path "\"\n" #sym                 \
            "_end:\n.byte 0\n.previous\n");                                                        \
    extern __attribute__((visibility("hidden"))) const unsigned char sym[], sym##_end[]

#endif /* DALLE_COMMON_EMBED_H */
