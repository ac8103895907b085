// Subcommands of the letsencrypt tool. Each gets argv starting at its own name and returns
// the process exit status (0 success, 1 failure, 2 usage error).
#pragma once

namespace letsencrypt::cli {

int obtain_command(int argc, char** argv);
int revoke_command(int argc, char** argv);
int account_command(int argc, char** argv);
int serve_command(int argc, char** argv);
int journal_command(int argc, char** argv);

}  // namespace letsencrypt::cli
