/* Protocol test app: the EEMBC / MLPerf Tiny command loop over the checksum model (model.c). */
#include "board.h"
#include "ee_protocol.h"

int main(void)
{
    board_init();
    board_exit(ee_protocol_run());
}
