#pragma once

// OpenSSL's PEM readers, given a null password callback, fall back to a default one that
// prompts on the terminal or reads standard input as soon as a block's headers say it is
// encrypted ("Proc-Type: 4,ENCRYPTED"), whatever the block holds: a certificate from a CA or
// from the store can carry such headers as well as a key can. The thread reading would wait
// there for input. The library reads no encrypted PEM, so every PEM reader is given this
// callback, which refuses: the read then fails like any other malformed block.

namespace letsencrypt::detail {

inline int refuse_pem_passphrase(char*, int, int, void*) noexcept { return -1; }

}  // namespace letsencrypt::detail
