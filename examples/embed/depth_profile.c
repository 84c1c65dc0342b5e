/* Embedding sigprop from C through its C ABI (sigprop/sigprop.h, docs/library.md "C ABI"): read
 * a spec file, apply overrides, run the infinite-width theory, print grad_var and rho per layer.
 *
 *   depth_profile_c SPEC.toml [table.key=value ...]
 *
 * Build against an installed prefix with plain cc (tests/embed/embed_test.sh does):
 *   cc depth_profile.c $(pkg-config --cflags --libs sigprop) -o depth_profile_c
 * Prints "layer grad_var rho" rows with 17 significant digits (undefined values as nan). */
#include <stdio.h>
#include <stdlib.h>

#include <sigprop/sigprop.h>

/* Prints the failed call, its status and the library's message; returns the exit status. */
static int fail(const char* what, sigprop_status status) {
  fprintf(stderr, "depth_profile_c: %s: %s: %s\n", what, sigprop_status_name(status), sigprop_last_error());
  return status == SIGPROP_E_CONFIG ? 2 : 1;
}

/* Progress: the C ABI's callback; returning 0 would cancel (SIGPROP_E_CANCELLED). */
static int32_t count_calls(void* user, double fraction, const char* stage) {
  (void)fraction;
  (void)stage;
  ++*(int*)user;
  return 1;
}

int main(int argc, char** argv) {
  sigprop_spec* spec = NULL;
  sigprop_profile* profile = NULL;
  double *grad_var = NULL, *rho = NULL;
  int64_t rows = 0;
  int calls = 0, rc = 0, i;
  sigprop_status st;

  if (argc < 2) {
    fprintf(stderr, "usage: depth_profile_c SPEC.toml [table.key=value ...]\n");
    return 2;
  }
  if (sigprop_abi_version() != SIGPROP_ABI_VERSION) {
    fprintf(stderr, "depth_profile_c: built for C ABI %d, the library has %d\n", SIGPROP_ABI_VERSION,
            (int)sigprop_abi_version());
    return 1;
  }
  if ((st = sigprop_spec_from_file(argv[1], &spec)) != SIGPROP_OK) return fail(argv[1], st);
  for (i = 2; i < argc; ++i)
    if ((st = sigprop_spec_set(spec, argv[i])) != SIGPROP_OK) {
      rc = fail(argv[i], st);
      goto done;
    }

  /* NULL settings: the engine's defaults, as `sigprop theory` without options. */
  if ((st = sigprop_theory(spec, NULL, count_calls, &calls, &profile)) != SIGPROP_OK) {
    rc = fail("theory", st);
    goto done;
  }
  /* Sizing call (cap 0), then the caller's own buffers. */
  if ((st = sigprop_profile_values(profile, "grad_var", NULL, 0, &rows)) != SIGPROP_OK) {
    rc = fail("grad_var", st);
    goto done;
  }
  grad_var = malloc((size_t)rows * sizeof(double));
  rho = malloc((size_t)rows * sizeof(double));
  if (grad_var == NULL || rho == NULL) {
    fprintf(stderr, "depth_profile_c: out of memory\n");
    rc = 1;
    goto done;
  }
  if ((st = sigprop_profile_values(profile, "grad_var", grad_var, rows, &rows)) != SIGPROP_OK ||
      (st = sigprop_profile_values(profile, "rho", rho, rows, &rows)) != SIGPROP_OK) {
    rc = fail("values", st);
    goto done;
  }

  printf("# sigprop %s (C ABI %d), %s, %lld layers, %d progress calls\n", sigprop_version(), (int)sigprop_abi_version(),
         argv[1], (long long)rows - 1, calls);
  printf("layer grad_var rho\n");
  for (i = 0; i < rows; ++i) printf("%d %.17g %.17g\n", i, grad_var[i], rho[i]);

done:
  free(grad_var);
  free(rho);
  sigprop_profile_free(profile);
  sigprop_spec_free(spec);
  return rc;
}
