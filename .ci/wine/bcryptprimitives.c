/* A stand-in for Windows' bcryptprimitives.dll, which Debian 12's Wine 8
 * lacks and Rust's standard library (1.78 and later) imports for
 * `ProcessPrng`. Only the Windows tests under Wine use it (.ci/wine-test);
 * nothing of it ships. */
#include <windows.h>
#define SystemFunction036 NTAPI SystemFunction036
#include <ntsecapi.h>
#undef SystemFunction036

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG n = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!RtlGenRandom(data, n)) return FALSE;
        data += n;
        len -= n;
    }
    return TRUE;
}
