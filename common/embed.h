/* embed.h — embedding a data file into a binary at build time.
 *
 * DALLE_EMBED(sym, path) embeds `path` (relative to the repository root, where the compiler
 * runs) as the byte range [sym, sym_end) in .rodata; sym_end is followed by one NUL byte. The
 * symbols are local to the translation unit that uses the macro at file scope; the Makefile
 * makes that object depend on the file.
 */
#ifndef DALLE_COMMON_EMBED_H
#define DALLE_COMMON_EMBED_H

#define DALLE_EMBED(sym, path)                                                                     \
    __asm__(".section .rodata\n.balign 16\n" #sym ":\n.incbin \"" path "\"\n" #sym                 \
            "_end:\n.byte 0\n.previous\n");                                                        \
    extern const unsigned char sym[], sym##_end[]

#endif /* DALLE_COMMON_EMBED_H */
