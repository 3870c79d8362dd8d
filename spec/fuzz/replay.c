/* Runs a fuzz target's LLVMFuzzerTestOneInput over saved inputs, so the corpora replay as a
 * regression test with gcc and ASan/UBSan, without clang or libFuzzer.
 *
 *   replay PATH...   each PATH a file or a directory of files (not recursive), in name order
 *
 * Every input gets its own exact-size heap copy, as libFuzzer gives it, so ASan sees a read one
 * byte past it. Exit status 0 when all inputs ran; a failed check or a sanitizer report kills
 * the process, and the handlers below first name the input that did it. */
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input being run, for the crash handlers (which may only write()). */
static char current[4096];

static void say_current(void)
{
    static const char pre[] = "replay: failed on ";
    if (!current[0]) return;
    (void)!write(2, pre, sizeof pre - 1);
    (void)!write(2, current, strlen(current));
    (void)!write(2, "\n", 1);
}

static void on_fatal_signal(int sig)
{
    say_current();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* ASan and UBSan (with -fno-sanitize-recover) call this before they exit. Declared here
 * rather than taken from <sanitizer/common_interface_defs.h>, and weak, so that the runner
 * also links without sanitizers. */
void __sanitizer_set_death_callback(void (*callback)(void)) __attribute__((weak));

/* gcc links UBSan as a runtime of its own, which never calls ASan's death callback: make its
 * reports abort instead, so the SIGABRT handler names the input; and show where it happened. */
const char *__ubsan_default_options(void);
const char *__ubsan_default_options(void) { return "print_stacktrace=1:abort_on_error=1"; }

static int run_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    size_t cap = 4096, len = 0;
    uint8_t *buf = malloc(cap);
    size_t n;
    while (buf && (n = fread(buf + len, 1, cap - len, f)) > 0) {
        len += n;
        if (len == cap) buf = realloc(buf, cap *= 2);
    }
    fclose(f);
    if (!buf) {
        fprintf(stderr, "replay: %s: out of memory\n", path);
        return -1;
    }
    /* An exact-size copy: the slack of buf would hide an over-read from ASan. */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    if (len) memcpy(exact, buf, len);
    free(buf);
    snprintf(current, sizeof current, "%s", path);
    LLVMFuzzerTestOneInput(exact, len);
    current[0] = '\0';
    free(exact);
    return 0;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Runs every regular file in dir, sorted so failures reproduce in the same order. */
static int run_dir(const char *dir, size_t *count)
{
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t nnames = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (nnames == cap) {
            cap = cap ? cap * 2 : 256;
            char **grown = realloc(names, cap * sizeof *names);
            if (!grown) break;
            names = grown;
        }
        size_t need = strlen(dir) + strlen(e->d_name) + 2;
        names[nnames] = malloc(need);
        if (!names[nnames]) break;
        snprintf(names[nnames], need, "%s/%s", dir, e->d_name);
        nnames++;
    }
    closedir(d);
    qsort(names, nnames, sizeof *names, by_name);
    int rc = 0;
    for (size_t i = 0; i < nnames; i++) {
        struct stat st;
        if (rc == 0 && stat(names[i], &st) == 0 && S_ISREG(st.st_mode)) {
            if (run_file(names[i]) < 0) rc = -1;
            else (*count)++;
        }
        free(names[i]);
    }
    free(names);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s PATH... (files or directories of fuzz inputs)\n", argv[0]);
        return 2;
    }
    /* A failed FUZZ_CHECK aborts. Under ASan, its own handler reports a SIGSEGV (a read into
     * a guard page) and then calls the death callback; a handler of ours would replace it. */
    signal(SIGABRT, on_fatal_signal);
    if (__sanitizer_set_death_callback) {
        __sanitizer_set_death_callback(say_current);
    } else {
        signal(SIGSEGV, on_fatal_signal);
        signal(SIGBUS, on_fatal_signal);
        signal(SIGFPE, on_fatal_signal);
    }

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    size_t count = 0;
    int rc = 0;
    for (int i = 1; i < argc && rc == 0; i++) {
        struct stat st;
        if (stat(argv[i], &st) < 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            rc = -1;
        } else if (S_ISDIR(st.st_mode)) {
            rc = run_dir(argv[i], &count);
        } else if (run_file(argv[i]) < 0) {
            rc = -1;
        } else {
            count++;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    printf("%zu inputs in %.0f ms\n", count, ms);
    return rc == 0 && count > 0 ? 0 : 1;
}
