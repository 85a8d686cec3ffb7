/* The header on its own: nothing before it, nothing after it. */
#include "stopper.h"
