// asio.hpp: the Asio names the data path uses, in one place.
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>

#include "net/clock.hpp"

namespace smtplb {
namespace asio = boost::asio;
using asio::awaitable;
using asio::ip::tcp;
using error_code = boost::system::error_code;
// Errors are values on the data path: every operation yields (ec, ...).
inline constexpr auto use_nothrow = asio::as_tuple(asio::use_awaitable);
}  // namespace smtplb
