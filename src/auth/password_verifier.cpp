#include "auth/password_verifier.hpp"

#include <crypt.h>
#include <string.h>  // explicit_bzero

#include <algorithm>
#include <unordered_map>
#include <utility>

namespace smtplb::auth {
namespace detail {

// The verify() calls suspended on one io_context, each a completion
// handler and a tracked executor (so run() does not return while a hash is
// under way).  Workers hand verdicts here; the io_context's shutdown
// (WaitService below) turns `alive` off and destroys the handlers while
// the io_context can still take the coroutine frames they own.
struct Waiters {
  struct Waiter {
    asio::any_io_executor work;  // outstanding_work.tracked
    asio::any_completion_handler<void(Verdict)> handler;
  };

  std::mutex mu;
  bool alive = true;                                  // guarded by mu
  std::uint64_t next_id = 0;                          // guarded by mu
  std::unordered_map<std::uint64_t, Waiter> waiting;  // guarded by mu

  std::uint64_t add(Waiter w) {
    std::lock_guard lock(mu);
    std::uint64_t id = ++next_id;
    waiting.emplace(id, std::move(w));
    return id;
  }

  // From a worker (or the verifier's destructor): resumes waiter `id`.
  void complete(std::uint64_t id, Verdict v) {
    // The post happens under the lock so that shutdown() cannot run, and
    // the io_context go away, between the `alive` check and the post.
    std::lock_guard lock(mu);
    if (!alive) return;
    auto node = waiting.extract(id);
    if (node.empty()) return;
    Waiter& w = node.mapped();
    asio::post(w.work, [h = std::move(w.handler), v]() mutable { std::move(h)(v); });
  }

  void shutdown() {
    std::unordered_map<std::uint64_t, Waiter> dropped;
    {
      std::lock_guard lock(mu);
      alive = false;
      dropped.swap(waiting);
    }
    // `dropped` goes here: each handler hands its coroutine frame to the
    // io_context, which destroys it in its own shutdown.
  }
};

// Ties Waiters to an io_context's lifetime: Asio calls shutdown() on the
// services of an execution_context before destroying it, newest service
// first, so before the scheduler drops its queued handlers.
class WaitService : public asio::execution_context::service {
 public:
  static asio::execution_context::id id;

  explicit WaitService(asio::execution_context& ctx)
      : asio::execution_context::service(ctx), waiters_(std::make_shared<Waiters>()) {}

  const std::shared_ptr<Waiters>& waiters() const { return waiters_; }

 private:
  void shutdown() override { waiters_->shutdown(); }

  std::shared_ptr<Waiters> waiters_;
};

asio::execution_context::id WaitService::id;

}  // namespace detail

namespace {

void wipe(std::string& s) {
  explicit_bzero(s.data(), s.size());
  s.clear();
}

// Compares without an early exit, so the time taken does not tell how
// many leading characters of the hash were right.  The lengths are not
// secret (they follow from the method).
bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  volatile unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    diff = diff | static_cast<unsigned char>(a[i] ^ b[i]);
  }
  return diff == 0;
}

}  // namespace

std::string_view to_string(Verdict v) {
  switch (v) {
    case Verdict::kAccepted:
      return "accepted";
    case Verdict::kRejected:
      return "rejected";
    case Verdict::kBusy:
      return "busy";
  }
  return "?";
}

std::optional<std::string> crypt_hash(const std::string& password, const std::string& setting) {
  // Value-initialised, so `initialized` is 0 as crypt_rn() requires; about
  // 32 KiB, hence the heap.
  auto data = std::make_unique<crypt_data>();
  const char* out = crypt_rn(password.c_str(), setting.c_str(), data.get(), sizeof *data);
  std::optional<std::string> hash;
  // crypt_rn() returns null on failure; a '*' failure token is checked for
  // as well, should a build return one anyway.
  if (out && out[0] != '*') hash.emplace(out);
  explicit_bzero(data.get(), sizeof *data);  // it holds a copy of the password
  return hash;
}

PasswordVerifier::PasswordVerifier(VerifierOptions options, Hasher hasher)
    : options_(options), hasher_(std::move(hasher)) {
  int n = std::max(1, options_.threads);
  workers_.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) workers_.emplace_back([this] { run_worker(); });
}

PasswordVerifier::~PasswordVerifier() {
  std::deque<Job> queued;
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    queued.swap(queue_);
  }
  wake_.notify_all();
  for (Job& job : queued) {
    busy_.fetch_add(1, std::memory_order_relaxed);
    wipe(job.password);
    job.waiters->complete(job.id, Verdict::kBusy);
  }
  for (std::thread& t : workers_) t.join();  // hashes in progress complete normally
}

PasswordVerifier::Counters PasswordVerifier::counters() const {
  return {accepted_.load(std::memory_order_relaxed), rejected_.load(std::memory_order_relaxed),
          busy_.load(std::memory_order_relaxed)};
}

awaitable<Verdict> PasswordVerifier::verify(std::shared_ptr<const PasswordFile> file,
                                            std::string user, std::string password) {
  if (!file || password.size() > options_.max_password_octets ||
      password.find('\0') != std::string::npos) {
    wipe(password);
    rejected_.fetch_add(1, std::memory_order_relaxed);
    co_return Verdict::kRejected;
  }
  Job job{nullptr, 0, std::move(file), std::move(user), password};
  wipe(password);  // a move would leave a short password's bytes behind
  co_return co_await asio::async_initiate<decltype(asio::use_awaitable), void(Verdict)>(
      [this](auto handler, Job job) {
        asio::any_io_executor ex = asio::get_associated_executor(handler);  // the coroutine's
        start(std::move(ex), std::move(handler), std::move(job));
      },
      asio::use_awaitable, std::move(job));
}

void PasswordVerifier::start(asio::any_io_executor ex,
                             asio::any_completion_handler<void(Verdict)> handler, Job job) {
  asio::execution_context& ctx = asio::query(ex, asio::execution::context);
  std::shared_ptr<detail::Waiters> waiters = asio::use_service<detail::WaitService>(ctx).waiters();
  {
    std::lock_guard lock(mu_);
    if (!stopping_ && queue_.size() < options_.max_queued) {
      job.waiters = waiters;
      job.id = waiters->add(
          {asio::prefer(ex, asio::execution::outstanding_work.tracked), std::move(handler)});
      queue_.push_back(std::move(job));
      wake_.notify_one();
      return;
    }
  }
  busy_.fetch_add(1, std::memory_order_relaxed);
  wipe(job.password);
  // Never inline: the handler must not run inside its initiating function.
  asio::post(ex, [h = std::move(handler)]() mutable { std::move(h)(Verdict::kBusy); });
}

void PasswordVerifier::run_worker() {
  for (;;) {
    Job job;
    {
      std::unique_lock lock(mu_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (stopping_) return;  // the destructor answers what is queued
      job = std::move(queue_.front());
      queue_.pop_front();
    }
    Verdict v = check(job);
    wipe(job.password);
    job.waiters->complete(job.id, v);
  }
}

Verdict PasswordVerifier::check(const Job& job) {
  std::optional<std::string_view> stored = job.file->find(job.user);
  bool match = false;
  try {
    // Unknown user: the same work against the dummy, then kRejected
    // whatever it says.
    std::string setting(stored ? *stored : job.file->dummy_hash());
    std::optional<std::string> computed = hasher_(job.password, setting);
    match = computed && constant_time_equal(*computed, setting);
  } catch (const std::exception&) {  // out of memory: a temporary failure
    busy_.fetch_add(1, std::memory_order_relaxed);
    return Verdict::kBusy;
  }
  if (stored && match) {
    accepted_.fetch_add(1, std::memory_order_relaxed);
    return Verdict::kAccepted;
  }
  rejected_.fetch_add(1, std::memory_order_relaxed);
  return Verdict::kRejected;
}

}  // namespace smtplb::auth
