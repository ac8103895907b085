// letsencrypt: the operator's command-line tool.
#include <cstdio>
#include <cstring>
#include <string_view>

#include "cli/commands.hpp"

namespace {

struct command {
  const char* name;
  const char* summary;
  int (*run)(int argc, char** argv);
};

const command commands[] = {
    {"obtain", "obtain a certificate from an ACME CA, serving the challenge itself", letsencrypt::cli::obtain_command},
    {"revoke", "revoke a certificate", letsencrypt::cli::revoke_command},
    {"account", "show, roll over the key of, or deactivate the ACME account", letsencrypt::cli::account_command},
    {"serve", "run the HTTPS server with automatic certificates (the Quick Start server)", letsencrypt::cli::serve_command},
    {"journal", "inspect, verify, compact, export or import the cache file", letsencrypt::cli::journal_command},
};

void usage() {
  std::printf("usage: letsencrypt <command> [options]   (letsencrypt <command> --help)\n\ncommands:\n");
  for (const auto& c : commands) std::printf("  %-8s %s\n", c.name, c.summary);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::strcmp(argv[1], "--help") == 0 || std::strcmp(argv[1], "-h") == 0 ||
      std::strcmp(argv[1], "help") == 0) {
    usage();
    return argc < 2 ? 2 : 0;
  }
  for (const auto& c : commands)
    if (std::string_view(argv[1]) == c.name) return c.run(argc - 1, argv + 1);
  std::fprintf(stderr, "letsencrypt: unknown command '%s'\n", argv[1]);
  usage();
  return 2;
}
