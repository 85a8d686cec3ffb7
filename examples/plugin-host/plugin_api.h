/* The interface between the plugin host and its plugins (C, so a plugin can be written in any
 * language that makes a shared object). A plugin exports one symbol, plugin_entry, and links
 * against libstopper; the host gives it stoppers and owns their lifetime.
 *
 * The rule that makes unloading safe: every thread a plugin starts runs through
 * stopper_spawn(s, fn, arg). When fn returns, the thread is back in libstopper's code and exits
 * s there, so once the host's stopper_join(s) returns, no thread runs plugin code any more and
 * dlclose() may unmap it. (A thread the plugin made itself would still be returning through
 * plugin code after it left the stopper.) Callbacks and hooks pointing into the plugin must be
 * unregistered (or have run) before its worker returns. */
#ifndef PLUGIN_API_H
#define PLUGIN_API_H

#ifdef __cplusplus
/* In C++ the C type lives in namespace stopper (stopper.hpp). */
#include <stopper.hpp>
#define PLUGIN_STOPPER ::stopper::c_api::stopper
extern "C" {
#else
#include <stopper.h>
#define PLUGIN_STOPPER struct stopper
#endif

#include <stdint.h>

#define PLUGIN_ABI 1

typedef struct plugin_v1 {
    uint32_t abi;     /* PLUGIN_ABI */
    const char *name;
    /* Starts one worker inside s (with stopper_spawn) and returns a stopper status:
     * STOPPER_OK, or what stopper_spawn returned. The worker ends soon after s stops. */
    int32_t (*start)(PLUGIN_STOPPER *s);
    /* Units of work done so far by all of this plugin's workers. */
    uint64_t (*progress)(void);
} plugin_v1;

/* The one symbol a plugin exports. */
const plugin_v1 *plugin_entry(void);

#ifdef __cplusplus
}
#endif

#endif
