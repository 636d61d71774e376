/* A stand-in for Windows' bcryptprimitives.dll, for Wine 8 only (Debian 12's Wine).
 *
 * Rust 1.78 and later make every Windows program import ProcessPrng from bcryptprimitives.dll,
 * which Windows 10 and later have and Wine has only since 9.0. Under Wine 8 the program under
 * test does not start. This DLL supplies that one function from what Wine 8 does have:
 * RtlGenRandom (advapi32's SystemFunction036), the system's random generator. It is copied into
 * the Wine prefix only; the program under test is the real x86_64-pc-windows-gnu build. */
#include <windows.h>
#include <ntsecapi.h>

/* ProcessPrng's contract: fill `data` with `len` random bytes; always TRUE on Windows. */
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
  while (len > 0) {
    ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
    if (!RtlGenRandom(data, chunk)) return FALSE;
    data += chunk;
    len -= chunk;
  }
  return TRUE;
}
