// letsencrypt serve: the Quick Start server (examples/redirect_server.cpp) as a subcommand.
#define LETSENCRYPT_EXAMPLE_NO_MAIN
#include "../../examples/redirect_server.cpp"

#include "cli/commands.hpp"

int letsencrypt::cli::serve_command(int argc, char** argv) { return redirect_server_main(argc, argv); }
