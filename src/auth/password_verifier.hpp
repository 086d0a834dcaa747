// password_verifier.hpp: checks AUTH passwords with crypt(3), off the event
// loops.
//
// A hash costs tens of milliseconds of CPU (yescrypt, bcrypt) by design, so
// it runs on a small fixed pool of worker threads shared by all cores, fed
// by a bounded queue.  verify() suspends the session's coroutine and
// resumes it on its own executor when a worker is done; when the queue is
// full it answers kBusy at once (454 4.7.0, RFC 4954 §6) instead of letting
// a flood of AUTH pile up behind the hashes (SECURITY.md §6).
//
// Timing (CVE-2016-6210): an unknown user's password is hashed against the
// file's dummy_hash(), a real hash of the file's most common method and
// cost, and the answer is kRejected whatever the result, so unknown and
// known users take the same time.  Passwords over max_password_octets, or
// with a NUL (crypt(3) would stop there), are refused without hashing
// (CVE-2016-6515): that says nothing about the user.  The computed hash is
// compared with the stored one in constant time.
//
// Locks: verify() takes two short uncontended locks (the queue, and the
// calling io_context's list of waiters) once per AUTH, never per message.
//
// Lifetimes: the verifier must outlive the verify() calls it starts.  Its
// destructor answers kBusy to what is still queued, lets the hashes in
// progress finish, and joins the workers.  An io_context destroyed while
// its coroutines wait here is fine: its waiters are dropped with it (an
// Asio service of that io_context holds them) and the workers' answers for
// it are thrown away.  A wait is not cancellable; it lasts one queue's
// worth of hashes at most.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "auth/password_file.hpp"
#include "net/asio.hpp"

namespace smtplb::auth {
namespace detail {
struct Waiters;  // one io_context's suspended verify() calls
}

enum class Verdict {
  kAccepted,  // the user exists and the password matches: 235 2.7.0
  kRejected,  // unknown user, wrong or refused password: 535 5.7.8
  kBusy,      // the queue is full or the verifier is stopping: 454 4.7.0
};
std::string_view to_string(Verdict v);

struct VerifierOptions {
  // Two threads: one expensive hash (bcrypt cost 14 takes a second) does
  // not stall every other AUTH, and a flood of AUTH from many addresses
  // costs at most two cores, the event loops keep the rest.
  int threads = 2;
  // Waiting hashes beyond those in progress.  32 at ~50 ms each on two
  // threads is under a second of wait, far inside the client's command
  // timeout; past that the client is told to come back (kBusy).
  std::size_t max_queued = 32;
  // SECURITY.md §6: refuse without hashing above this.  libxcrypt itself
  // refuses passphrases of 512 octets or more (CRYPT_MAX_PASSPHRASE_SIZE);
  // those are hashed as far as crypt_rn() goes, which fails at once.
  std::size_t max_password_octets = 1024;
};

// crypt(3) of `password` with `setting` (a full hash works as a setting),
// or nullopt when crypt refuses.  Runs on a worker thread.
using Hasher = std::function<std::optional<std::string>(const std::string& password,
                                                        const std::string& setting)>;
// The real one: crypt_rn() with a zeroed struct crypt_data per call (thread
// safe), wiped afterwards since it holds a copy of the password.
std::optional<std::string> crypt_hash(const std::string& password, const std::string& setting);

class PasswordVerifier {
 public:
  // `hasher` is injected so tests can block a worker or watch what it is
  // asked; production uses crypt_hash.
  explicit PasswordVerifier(VerifierOptions options = {}, Hasher hasher = crypt_hash);
  ~PasswordVerifier();
  PasswordVerifier(const PasswordVerifier&) = delete;
  PasswordVerifier& operator=(const PasswordVerifier&) = delete;

  // Checks `password` for `user` in `file`.  Resumes on the caller's
  // executor.  A null `file` (no password file configured) rejects.
  awaitable<Verdict> verify(std::shared_ptr<const PasswordFile> file, std::string user,
                            std::string password);

  struct Counters {
    std::uint64_t accepted = 0;
    std::uint64_t rejected = 0;  // includes unknown users and refused passwords
    std::uint64_t busy = 0;
  };
  Counters counters() const;

 private:
  struct Job {
    std::shared_ptr<detail::Waiters> waiters;  // where to send the verdict
    std::uint64_t id = 0;                      // the waiter in `waiters`
    std::shared_ptr<const PasswordFile> file;
    std::string user;
    std::string password;  // wiped once hashed
  };
  // Queues `job`, or answers kBusy through `ex` (the caller's executor).
  void start(asio::any_io_executor ex, asio::any_completion_handler<void(Verdict)> handler,
             Job job);
  void run_worker();
  Verdict check(const Job& job);

  const VerifierOptions options_;
  const Hasher hasher_;

  std::mutex mu_;
  std::condition_variable wake_;
  std::deque<Job> queue_;  // guarded by mu_
  bool stopping_ = false;  // guarded by mu_
  std::vector<std::thread> workers_;

  std::atomic<std::uint64_t> accepted_{0};
  std::atomic<std::uint64_t> rejected_{0};
  std::atomic<std::uint64_t> busy_{0};
};

}  // namespace smtplb::auth
