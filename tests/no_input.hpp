#pragma once
// Shared by the tests of every reader of PEM text: whether a call asks for input it will
// never get (OpenSSL's default passphrase prompt).

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <ostream>
#include <string>
#include <string_view>
#include <thread>

namespace letsencrypt::testing {

enum class outcome { answered_true, answered_false, waited_for_input };

inline std::ostream& operator<<(std::ostream& os, outcome o) {
  return os << (o == outcome::answered_true    ? "answered true"
                : o == outcome::answered_false ? "answered false"
                                               : "waited for input (killed after 2 s)");
}

// Runs `fn` in a child process that has no controlling terminal and whose standard input is
// an open pipe nobody writes to, as a server's may be. OpenSSL's default passphrase prompt
// reads the terminal or, with none, standard input, so a call that prompts waits there; the
// child is killed after two seconds and that is reported.
inline outcome run_without_input(const std::function<bool()>& fn) {
  int p[2];
  if (pipe(p) != 0) return outcome::waited_for_input;
  const pid_t pid = fork();
  if (pid == 0) {
    setsid();
    dup2(p[0], 0);
    _exit(fn() ? 0 : 1);
  }
  close(p[0]);
  int status = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
  pid_t done = 0;
  while ((done = waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  if (done == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
  }
  close(p[1]);
  if (done != pid || !WIFEXITED(status)) return outcome::waited_for_input;
  return WEXITSTATUS(status) == 0 ? outcome::answered_true : outcome::answered_false;
}

// `pem` with the headers of an encrypted PEM block after its first BEGIN line: OpenSSL's PEM
// readers then ask for a passphrase whatever the block holds.
inline std::string with_encryption_headers(std::string_view pem) {
  std::string out(pem);
  const auto eol = out.find('\n');
  if (eol != std::string::npos)
    out.insert(eol + 1, "Proc-Type: 4,ENCRYPTED\nDEK-Info: AES-256-CBC,00112233445566778899AABBCCDDEEFF\n\n");
  return out;
}

}  // namespace letsencrypt::testing
