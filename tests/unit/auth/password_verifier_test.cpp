#include "auth/password_verifier.hpp"

#include <crypt.h>
#include <gtest/gtest.h>

#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace smtplb::auth {
namespace {

// A crypt(3) hash of `password`, made the way an operator's tool would:
// crypt_gensalt_rn for a fresh salt at `cost`, then crypt_rn.
std::string make_hash(const char* prefix, unsigned long cost, const std::string& password) {
  char salt[CRYPT_GENSALT_OUTPUT_SIZE];
  if (!crypt_gensalt_rn(prefix, cost, nullptr, 0, salt, sizeof salt)) return "";
  auto hash = crypt_hash(password, salt);
  return hash.value_or("");
}

std::shared_ptr<const PasswordFile> file_of(const std::string& text) {
  auto load = parse_password_file(text, "test");
  EXPECT_TRUE(load.errors.empty()) << (load.errors.empty() ? "" : load.errors[0].str());
  return load.file;
}

// Runs one verify() to completion on a fresh io_context on this thread.
Verdict verify_now(PasswordVerifier& v, std::shared_ptr<const PasswordFile> file, std::string user,
                   std::string password) {
  asio::io_context ioc;
  std::optional<Verdict> got;
  asio::co_spawn(ioc, v.verify(std::move(file), std::move(user), std::move(password)),
                 [&](std::exception_ptr e, Verdict r) {
                   if (!e) got = r;
                 });
  ioc.run();
  EXPECT_TRUE(got.has_value());
  return got.value_or(Verdict::kBusy);
}

// A hasher that records what it is asked and answers the setting itself,
// so a known user is accepted whatever the password.
struct Recorder {
  std::mutex mu;
  std::vector<std::pair<std::string, std::string>> calls;  // (password, setting)

  Hasher hasher() {
    return [this](const std::string& password, const std::string& setting) {
      std::lock_guard lock(mu);
      calls.emplace_back(password, setting);
      return std::optional<std::string>(setting);
    };
  }
};

// A hasher whose first call blocks until release(); the rest answer at once
// like Recorder's.
struct Gate {
  std::promise<void> entered;
  std::promise<void> released;
  std::shared_future<void> release_future = released.get_future().share();
  std::once_flag first;

  Hasher hasher() {
    return [this](const std::string&, const std::string& setting) {
      bool blocked = false;
      std::call_once(first, [&] { blocked = true; });
      if (blocked) {
        entered.set_value();
        release_future.wait();
      }
      return std::optional<std::string>(setting);
    };
  }
  void wait_entered() { entered.get_future().wait(); }
  void release() { released.set_value(); }
};

TEST(PasswordVerifier, ChecksRealHashesOfEachMethod) {
  struct Case {
    const char* name;
    const char* prefix;
    unsigned long cost;  // the lowest each method allows, to keep the test fast
  };
  const Case cases[] = {
      {"yescrypt", "$y$", 1},
      {"SHA-512", "$6$", 1000},
      {"bcrypt $2b$", "$2b$", 4},
      {"bcrypt $2y$", "$2y$", 4},
  };
  PasswordVerifier v(VerifierOptions{.threads = 1});
  for (const Case& c : cases) {
    std::string hash = make_hash(c.prefix, c.cost, "correct horse");
    ASSERT_TRUE(hash.starts_with(c.prefix)) << c.name << ": " << hash;
    auto file = file_of("alice:" + hash + "\n");
    ASSERT_TRUE(file) << c.name;
    const struct {
      const char* what;
      const char* user;
      const char* password;
      Verdict want;
    } checks[] = {
        {"right password", "alice", "correct horse", Verdict::kAccepted},
        {"wrong password", "alice", "correct horsE", Verdict::kRejected},
        {"empty password", "alice", "", Verdict::kRejected},
        {"user in another case", "Alice", "correct horse", Verdict::kRejected},
        {"unknown user", "mallory", "correct horse", Verdict::kRejected},
    };
    for (const auto& k : checks) {
      EXPECT_EQ(verify_now(v, file, k.user, k.password), k.want) << c.name << ": " << k.what;
    }
  }
  auto n = v.counters();
  EXPECT_EQ(n.accepted, 4u);
  EXPECT_EQ(n.rejected, 16u);
  EXPECT_EQ(n.busy, 0u);
}

TEST(PasswordVerifier, CryptHashFailsOnWhatCryptRefuses) {
  std::string hash = make_hash("$2b$", 4, "pw");
  EXPECT_EQ(crypt_hash("pw", hash), hash);
  EXPECT_NE(crypt_hash("pW", hash), hash);
  EXPECT_EQ(crypt_hash("pw", "$y$j9T$not-a-salt"), std::nullopt) << "a bad setting";
  EXPECT_EQ(crypt_hash(std::string(512, 'a'), hash), std::nullopt)
      << "libxcrypt's own passphrase limit";
}

TEST(PasswordVerifier, EveryDummyHashIsUsableByCrypt) {
  // An empty file's fixed dummy, and a file's borrowed one: crypt(3) must
  // really run on them, or unknown users would answer faster.
  auto empty = file_of("");
  ASSERT_TRUE(empty);
  auto hashed = crypt_hash("guess", std::string(empty->dummy_hash()));
  ASSERT_TRUE(hashed);
  EXPECT_TRUE(hashed->starts_with(empty->dummy_hash()));
  PasswordVerifier v(VerifierOptions{.threads = 1});
  EXPECT_EQ(verify_now(v, empty, "alice", "guess"), Verdict::kRejected);
}

TEST(PasswordVerifier, UnknownUserHashesThePasswordAgainstTheDummy) {
  // CVE-2016-6210: the same work as for a real user, and the same password
  // length, so the time says nothing about who exists.
  Recorder rec;
  PasswordVerifier v(VerifierOptions{.threads = 1}, rec.hasher());
  std::string hash = make_hash("$6$", 1000, "pw");
  auto file = file_of("alice:" + hash + "\n");
  EXPECT_EQ(verify_now(v, file, "mallory", "guess"), Verdict::kRejected);
  EXPECT_EQ(verify_now(v, file, "alice", "guess"), Verdict::kAccepted) << "Recorder matches all";
  ASSERT_EQ(rec.calls.size(), 2u);
  EXPECT_EQ(rec.calls[0], std::make_pair(std::string("guess"), std::string(file->dummy_hash())));
  EXPECT_EQ(rec.calls[0].second, hash) << "the dummy is of the file's cost";
  EXPECT_EQ(rec.calls[1], std::make_pair(std::string("guess"), hash));
}

TEST(PasswordVerifier, RefusesSomePasswordsWithoutHashing) {
  struct Case {
    const char* name;
    std::string password;
    bool hashed;
  };
  const std::vector<Case> cases = {
      {"1024 octets: hashed", std::string(1024, 'a'), true},
      {"1025 octets: refused", std::string(1025, 'a'), false},
      {"a megabyte: refused", std::string(1 << 20, 'a'), false},
      {"a NUL would cut it short in crypt(3)", std::string("pw\0tail", 7), false},
  };
  for (const Case& c : cases) {
    Recorder rec;
    PasswordVerifier v(VerifierOptions{.threads = 1}, rec.hasher());
    auto file = file_of("alice:" + make_hash("$2b$", 4, "pw"));
    Verdict got = verify_now(v, file, "alice", c.password);
    EXPECT_EQ(got, c.hashed ? Verdict::kAccepted : Verdict::kRejected) << c.name;
    EXPECT_EQ(rec.calls.size(), c.hashed ? 1u : 0u) << c.name;
  }
  PasswordVerifier v(VerifierOptions{.threads = 1});
  EXPECT_EQ(verify_now(v, nullptr, "alice", "pw"), Verdict::kRejected) << "no password file";
}

TEST(PasswordVerifier, ResumesOnTheCallersExecutor) {
  std::thread::id hashed_on;
  PasswordVerifier v(VerifierOptions{.threads = 1},
                     [&](const std::string&, const std::string& setting) {
                       hashed_on = std::this_thread::get_id();
                       return std::optional<std::string>(setting);
                     });
  auto file = file_of("alice:" + make_hash("$2b$", 4, "pw"));
  asio::io_context ioc;
  asio::strand<asio::io_context::executor_type> strand(ioc.get_executor());
  bool in_strand = false;
  std::thread::id resumed_on;
  asio::co_spawn(
      strand,
      [&]() -> awaitable<void> {
        co_await v.verify(file, "alice", "pw");
        resumed_on = std::this_thread::get_id();
        in_strand = strand.running_in_this_thread();
      },
      asio::detached);
  ioc.run();
  EXPECT_EQ(resumed_on, std::this_thread::get_id());
  EXPECT_NE(hashed_on, std::this_thread::get_id()) << "the hash ran on a worker";
  EXPECT_TRUE(in_strand);
}

TEST(PasswordVerifier, AFullQueueAnswersBusyAtOnce) {
  Gate gate;
  PasswordVerifier v(VerifierOptions{.threads = 1, .max_queued = 1}, gate.hasher());
  auto file = file_of("alice:" + make_hash("$2b$", 4, "pw"));
  asio::io_context ioc;
  std::vector<std::optional<Verdict>> got(3);
  auto spawn = [&](int i) {
    asio::co_spawn(ioc, v.verify(file, "alice", "pw"),
                   [&got, i](std::exception_ptr, Verdict r) { got[i] = r; });
  };
  spawn(0);
  ioc.poll();
  gate.wait_entered();  // the only worker is busy with the first
  spawn(1);             // queued
  spawn(2);             // no room
  ioc.poll();
  EXPECT_EQ(got[2], Verdict::kBusy);
  EXPECT_FALSE(got[0]);
  EXPECT_FALSE(got[1]);
  gate.release();
  ioc.run();  // the pending hashes keep run() going until they are answered
  EXPECT_EQ(got[0], Verdict::kAccepted);
  EXPECT_EQ(got[1], Verdict::kAccepted);
  EXPECT_EQ(v.counters().busy, 1u);
}

TEST(PasswordVerifier, DestructionAnswersBusyToTheQueueAndFinishesTheHashInProgress) {
  Gate gate;
  auto v = std::make_unique<PasswordVerifier>(VerifierOptions{.threads = 1, .max_queued = 4},
                                              gate.hasher());
  auto file = file_of("alice:" + make_hash("$2b$", 4, "pw"));
  asio::io_context ioc;
  std::vector<std::optional<Verdict>> got(3);
  for (int i = 0; i < 3; ++i) {
    asio::co_spawn(ioc, v->verify(file, "alice", "pw"),
                   [&got, i](std::exception_ptr, Verdict r) { got[i] = r; });
    ioc.poll();
    if (i == 0) gate.wait_entered();
  }
  std::thread destroyer([&] { v.reset(); });  // joins the worker, so waits for the gate
  while (!got[1] || !got[2]) ioc.run_one();
  EXPECT_EQ(got[1], Verdict::kBusy);
  EXPECT_EQ(got[2], Verdict::kBusy);
  EXPECT_FALSE(got[0]);
  gate.release();
  ioc.run();
  destroyer.join();
  EXPECT_EQ(got[0], Verdict::kAccepted);
}

TEST(PasswordVerifier, AnIoContextDestroyedWhileWaitingIsHarmless) {
  Gate gate;
  PasswordVerifier v(VerifierOptions{.threads = 1, .max_queued = 4}, gate.hasher());
  auto file = file_of("alice:" + make_hash("$2b$", 4, "pw"));

  // Sets its flag when the coroutine frame holding it is destroyed.
  struct Witness {
    bool* destroyed;
    ~Witness() { *destroyed = true; }
  };
  auto session = [&](bool* destroyed, bool* resumed) -> awaitable<void> {
    Witness w{destroyed};
    co_await v.verify(file, "alice", "pw");
    *resumed = true;
  };

  bool destroyed_hashing = false, resumed_hashing = false;  // its hash is in progress
  bool destroyed_queued = false, resumed_queued = false;    // its hash is still queued
  {
    auto ioc = std::make_unique<asio::io_context>();
    asio::co_spawn(*ioc, session(&destroyed_hashing, &resumed_hashing), asio::detached);
    ioc->poll();
    gate.wait_entered();
    asio::co_spawn(*ioc, session(&destroyed_queued, &resumed_queued), asio::detached);
    ioc->poll();
    ioc.reset();  // as at shutdown: the loop stopped, its sessions are torn down
  }
  EXPECT_TRUE(destroyed_hashing);
  EXPECT_TRUE(destroyed_queued);
  gate.release();  // both hashes finish, for nobody

  // The verifier still serves other io_contexts.
  EXPECT_EQ(verify_now(v, file, "alice", "pw"), Verdict::kAccepted);
  EXPECT_FALSE(resumed_hashing);
  EXPECT_FALSE(resumed_queued);
}

}  // namespace
}  // namespace smtplb::auth
