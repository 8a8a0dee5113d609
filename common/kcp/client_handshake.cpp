#include "common/kcp/client_handshake.hpp"

#include <cstring>
#include <stdexcept>

#include "common/kcp/segment.hpp"

namespace pfp::kcp {

ClientHandshake::ClientHandshake(Security security, std::span<const uint8_t> psk,
                                 const Nonce& client_nonce, uint64_t unix_seconds,
                                 std::span<const uint8_t> early_data, uint32_t now_ms)
    : security_(security), client_nonce_(client_nonce), deadline_(now_ms + kHelloFirstRetry) {
    if ((security == Security::psk) != (psk.size() == kKeySize))
        throw std::invalid_argument(
            "KCP handshake: a key of 32 bytes goes with psk, none with plain");
    hello_.resize(hello_size(security, early_data.size()));
    write_hello_header(hello_.data(), security, client_nonce, unix_seconds);
    std::span<uint8_t> body(hello_.data() + kHelloHeader, hello_.size() - kHelloHeader);
    if (security == Security::plain) {
        if (!early_data.empty()) std::memcpy(body.data(), early_data.data(), early_data.size());
        return;
    }
    std::memcpy(psk_.data(), psk.data(), kKeySize);
    Key key;
    Aead aead;
    if (!derive_hello_key(psk_, client_nonce, key) || !aead.set_key(key) ||
        !aead.seal(kHandshakeNonce, {hello_.data(), kHelloHeader}, early_data, body))
        throw std::runtime_error("KCP handshake: sealing the HELLO failed (OpenSSL)");
    key.fill(0);
}

ClientHandshake::Tick ClientHandshake::on_timer(uint32_t now_ms) noexcept {
    if (diff32(now_ms, deadline_) < 0) return Tick::wait;
    if (retries_left_ == 0) return Tick::give_up;
    --retries_left_;
    wait_ *= 2;
    deadline_ = now_ms + wait_;
    return Tick::resend;
}

ClientHandshake::Answer ClientHandshake::on_welcome(std::span<const uint8_t> datagram) noexcept {
    WelcomeView w;
    if (parse_welcome(datagram, w) != WireError::none) return Answer::malformed;
    if (w.security != security_) return Answer::wrong_security;
    SessionSecrets secrets;
    if (security_ == Security::psk) {
        // The tag covers the WELCOME's header and our nonce: only a holder of the PSK who saw
        // this HELLO can make it.
        Key welcome_key;
        std::array<uint8_t, kWelcomeHeader + kNonceSize> aad;
        std::memcpy(aad.data(), w.header.data(), kWelcomeHeader);
        std::memcpy(aad.data() + kWelcomeHeader, client_nonce_.data(), kNonceSize);
        const bool ok =
            derive_session(psk_, client_nonce_, w.server_nonce, w.conv, welcome_key, secrets) &&
            aead_.set_key(welcome_key) &&
            aead_.open(kHandshakeNonce, aad, w.body, std::span<uint8_t>{});
        welcome_key.fill(0);
        if (!ok) return Answer::forged;
    }
    conv_ = w.conv;
    secrets_ = secrets;
    return Answer::accepted;
}

}  // namespace pfp::kcp
