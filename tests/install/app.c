/* Built only through pkg-config against an installed prefix. */
#include <stdio.h>
#include <stopper.h>

int main(void) {
    stopper *s = stopper_new();
    stopper_stop_after(s, 1000000, 0);
    int r = stopper_wait(s, -1);
    int ok = r == STOPPER_STOPPED && stopper_reason(s) == STOPPER_REASON_DEADLINE &&
             stopper_abi_version() == STOPPER_ABI_VERSION;
    stopper_release(s);
    printf("%s: installed library (%s) %s\n", __FILE__, stopper_version(), ok ? "works" : "FAILED");
    return !ok;
}
