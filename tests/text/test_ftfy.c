/* test_ftfy.c — dalle_html_unescape against Python's html.unescape and dalle_ftfy_fix_text
 * against ftfy 6.3.1 fix_text() on hand-made cases, mojibake included (expected values from
 * Python). The golden normaliser corpus exercises both further (test_normalize.c).
 */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "model/text/ftfy.h"

typedef char *(*text_fn)(const char *, size_t, size_t *);

static void check(text_fn fn, const char *in, size_t n, const char *want, size_t want_n) {
    size_t got_n = 0;
    char *got = fn(in, n, &got_n);
    cr_assert_not_null(got, "NULL for \"%s\"", in);
    cr_expect(got_n == want_n && memcmp(got, want, want_n) == 0, "\"%s\" -> \"%s\", want \"%s\"",
              in, got, want);
    cr_expect_eq(got[got_n], '\0');
    free(got);
}

#define UNESCAPE(in, want) check(dalle_html_unescape, in, sizeof in - 1, want, sizeof want - 1)
#define FIX(in, want)      check(dalle_ftfy_fix_text, in, sizeof in - 1, want, sizeof want - 1)

Test(html_unescape, named) {
    UNESCAPE("&amp;", "&");
    UNESCAPE("&amp", "&");
    UNESCAPE("&ampfoo", "&foo"); /* longest known prefix, rest kept */
    UNESCAPE("&amplifier;", "&lifier;");
    UNESCAPE("&notit;", "\xc2\xac"
                        "it;");
    UNESCAPE("&notin;", "\xe2\x88\x89");
    UNESCAPE("&AMP;", "&");
    UNESCAPE("&Amp;", "&Amp;");
    UNESCAPE("&acE;", "\xe2\x88\xbe\xcc\xb3"); /* two code points */
    UNESCAPE("&unknown;", "&unknown;");
    UNESCAPE("&aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;",
             "&aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa;");
    UNESCAPE("&lt&gt", "<>");
    UNESCAPE("&amp;lt;", "&lt;"); /* one pass */
    UNESCAPE("&\xc3\xa9"
             "acute;",
             "&\xc3\xa9"
             "acute;");
    UNESCAPE("&", "&");
    UNESCAPE("a&b", "a&b");
}

Test(html_unescape, numeric) {
    UNESCAPE("&#65;", "A");
    UNESCAPE("&#65", "A");
    UNESCAPE("&#x41;", "A");
    UNESCAPE("&#X41", "A");
    UNESCAPE("&#0;", "\xef\xbf\xbd");
    UNESCAPE("&#13;", "\r");
    UNESCAPE("&#128;", "\xe2\x82\xac"); /* Windows-1252 */
    UNESCAPE("&#x81;", "\xc2\x81");
    UNESCAPE("&#xD800;", "\xef\xbf\xbd");
    UNESCAPE("&#1114112;", "\xef\xbf\xbd");
    UNESCAPE("&#99999999999999999999;", "\xef\xbf\xbd");
    UNESCAPE("&#1;", "");
    UNESCAPE("&#x7F;", "");
    UNESCAPE("&#xFFFE;", "");
    UNESCAPE("&#;", "&#;");
    UNESCAPE("&#x;", "&#x;");
}

Test(ftfy, entities) {
    FIX("&amp;lt;", "<"); /* fixed until nothing changes */
    FIX("P&EACUTE;REZ", "P\xc3\x89REZ");
    FIX("&NTILDE; &nTILDE;", "\xc3\x91 &nTILDE;");
    FIX("this&not that", "this&not that"); /* needs the ';' */
    FIX("&#x2019;s", "'s");
    FIX("&#150;", "\xe2\x80\x93");
    FIX("&lt;b&gt;", "<b>");
    FIX("<b>&amp;</b>", "<b>&amp;</b>");       /* '<' turns entity decoding off */
    FIX("&amp;\n<b>\n&amp;", "&\n<b>\n&amp;"); /* ... from that line on */
    FIX("&amp;<", "&amp;<");
}

Test(ftfy, characters) {
    FIX("a\r\nb\rc", "a\nb\nc");
    FIX("\xe2\x80\xa8x\xe2\x80\xa9", "\nx\n");
    FIX("\x1b[36;44mblue\x1b[0m", "blue");
    FIX("\x1b[\xd9\xa3m", ""); /* Python's \d is any decimal digit */
    FIX("a\0b\x7f"
        "c\xef\xbb\xbf"
        "d",
        "abcd");
    FIX("\xe2\x80\x9chi\xe2\x80\x99s\xe2\x80\x9d", "\"hi's\"");
    FIX("\xef\xac\x82u\xef\xac\x83"
        "e\xef\xac\x86",
        "fluffiest");
    FIX("\xef\xbc\xac\xef\xbc\xaf\xef\xbc\xb5\xef\xbc\xa4\xe3\x80\x80\xef\xbc\xae", "LOUD N");
    FIX("e\xcc\x81", "\xc3\xa9");
    FIX("\xc2\x80\xc2\x81\xc2\x9f", "\xe2\x82\xac\xc2\x81\xc5\xb8");
    FIX("&#x80;", "\xe2\x82\xac");
    FIX("", "");
}

Test(ftfy, mojibake) {
    FIX("caf\xc3\x83\xc2\xa9", "caf\xc3\xa9");           /* "cafÃ©" */
    FIX("\xc3\x83 la mode", "\xc3\xa0 la mode");         /* restore_byte_a0 */
    FIX("\xc3\x83\xc6\x92\xc3\x82\xc2\xa9", "\xc3\xa9"); /* twice garbled */
    FIX("mixed caf\xc3\x83\xc2\xa9 and caf\xc3\xa9", "mixed caf\xc3\xa9 and caf\xc3\xa9");
    FIX("\xc3\xb0\xc5\xb8\xcb\x9c\xe2\x82\xac", "\xf0\x9f\x98\x80");             /* an emoji */
    FIX("\xc3\xad\xc2\xa0\xc2\xbd\xc3\xad\xc2\xb8\xc2\x80", "\xf0\x9f\x98\x80"); /* CESU-8 */
    FIX("\xc3\xa2\xe2\x82\xac\xc5\x93 like this \xc3\xa2\xe2\x82\xac\xef\xbf\xbd",
        "\" like this \xef\xbf\xbd");    /* lossy sequence */
    FIX("na\xc3\xafve", "na\xc3\xafve"); /* not mojibake */
    FIX("\xc3\x83quele", "\xc3\x83quele");
}

Test(ftfy, invalid_utf8_gives_null) {
    size_t n = 0;
    cr_expect_null(dalle_ftfy_fix_text("\xff", 1, &n));
    cr_expect_null(dalle_html_unescape("a\xc3", 2, &n));
}
