/* install_dir.h — where the bundled demo model is, found from the running executable.
 *
 * Contract: for an executable at DIR/NAME, the demo model is DIR/../share/dalle-server/
 * models/demo (installed by `make install PREFIX=…`: PREFIX/bin/NAME), else DIR/../models/demo
 * (a binary in the build folder of a checkout: CHECKOUT/build/NAME); the first of them that
 * holds config.json wins, whatever the working directory. 0 and its absolute path in out;
 * -1 when neither holds one, with out naming the installed place, for the error message.
 */
#ifndef DALLE_COMMON_INSTALL_DIR_H
#define DALLE_COMMON_INSTALL_DIR_H

#include <stddef.h>

#define DALLE_INSTALL_DATA "share/dalle-server" /* under PREFIX; the Makefile's DATADIR */

int dalle_demo_model_dir(char *out, size_t size);

#endif /* DALLE_COMMON_INSTALL_DIR_H */
