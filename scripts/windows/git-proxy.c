/* git.exe for the Windows tests under Wine: Git for Windows does not run here, so this runs the
   Linux git named by CODESTORAGE_UNIX_GIT with this program's arguments, through Wine's own
   Unix spawn, and relays its output and exit status. A Unix child writes to the Unix descriptors
   of the Wine process, not to this program's Windows handles, so its output goes through files
   that are then copied to the Windows handles. `git config` is all the tests ask of it. */
#include <windows.h>
#include <stdio.h>
#include <stdlib.h>

typedef NTSTATUS (CDECL *spawn_fn)(char *const argv[], int wait);

static char *utf8(const wchar_t *w) {
  int len = WideCharToMultiByte(CP_UTF8, 0, w, -1, NULL, 0, NULL, NULL);
  char *s = malloc(len);
  WideCharToMultiByte(CP_UTF8, 0, w, -1, s, len, NULL, NULL);
  return s;
}

/* Copies the Unix file `unix` (read through Wine's Z: drive) to `handle`, then removes it. */
static void relay(const char *unix, DWORD handle) {
  char path[600];
  snprintf(path, sizeof path, "Z:%s", unix);
  for (char *c = path; *c; c++) if (*c == '/') *c = '\\';
  FILE *f = fopen(path, "rb");
  if (!f) return;
  HANDLE out = GetStdHandle(handle);
  char buf[65536];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
    DWORD written;
    WriteFile(out, buf, (DWORD)n, &written, NULL);
  }
  fclose(f);
  DeleteFileA(path);
}

int wmain(int argc, wchar_t **wargv) {
  char git[4096];
  DWORD n = GetEnvironmentVariableA("CODESTORAGE_UNIX_GIT", git, sizeof git);
  if (n == 0 || n >= sizeof git) { fputs("git.exe: set CODESTORAGE_UNIX_GIT\n", stderr); return 127; }
  spawn_fn spawn = (spawn_fn)GetProcAddress(GetModuleHandleA("ntdll.dll"), "__wine_unix_spawnvp");
  if (!spawn) { fputs("git.exe: not running under Wine\n", stderr); return 127; }
  char dir[256], out[300], err[300];
  n = GetEnvironmentVariableA("CODESTORAGE_GIT_PROXY_DIR", dir, sizeof dir);
  if (n == 0 || n >= sizeof dir) { fputs("git.exe: set CODESTORAGE_GIT_PROXY_DIR\n", stderr); return 127; }
  snprintf(out, sizeof out, "%s/git-%lu.out", dir, GetCurrentProcessId());
  snprintf(err, sizeof err, "%s/git-%lu.err", dir, GetCurrentProcessId());
  char **argv = calloc(argc + 7, sizeof *argv);
  int a = 0;
  argv[a++] = "/bin/sh";
  argv[a++] = "-c";
  argv[a++] = "out=$1 err=$2; shift 2; exec \"$@\" </dev/null >\"$out\" 2>\"$err\"";
  argv[a++] = "sh";
  argv[a++] = out;
  argv[a++] = err;
  argv[a++] = git;
  for (int i = 1; i < argc; i++) argv[a++] = utf8(wargv[i]);
  NTSTATUS status = spawn(argv, 1);
  relay(out, STD_OUTPUT_HANDLE);
  relay(err, STD_ERROR_HANDLE);
  return (int)status;
}
