/* The device's entry point on a board: start, then serve the link forever. Sleep in the idle branch
 * (WFI) if your board can wake on a received byte. */
#include "port.h"

int main(void)
{
    (void)port_start();
    for (;;) {
        (void)port_poll();
    }
}
