// `letsencrypt journal ...`: inspect, verify, compact, export and import state journals.
#pragma once

namespace letsencrypt::cli {

/// Runs `journal <dump|verify|compact|export|import-go> ...`; argv[0] is "journal" (the
/// dispatcher strips the program name). Prints to stdout/stderr and returns the process exit
/// status: 0 success, 1 failure or corruption, 2 usage error, 3 (verify) a torn tail that
/// opening would cut. Never prints private key material.
int journal_command(int argc, char** argv);

}  // namespace letsencrypt::cli
