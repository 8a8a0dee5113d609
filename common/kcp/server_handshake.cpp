#include "common/kcp/server_handshake.hpp"

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "common/kcp/bytes.hpp"

namespace pfp::kcp {

const char* to_string(HelloVerdict v) noexcept {
    switch (v) {
        case HelloVerdict::accepted:
            return "accepted";
        case HelloVerdict::duplicate:
            return "duplicate";
        case HelloVerdict::malformed:
            return "malformed";
        case HelloVerdict::wrong_security:
            return "wrong security mode";
        case HelloVerdict::stale:
            return "timestamp outside the window";
        case HelloVerdict::forged:
            return "failed authentication";
        case HelloVerdict::replayed:
            return "replayed from another address";
        case HelloVerdict::busy:
            return "too many pending handshakes";
        case HelloVerdict::internal_error:
            return "random source or OpenSSL failed";
    }
    return "?";
}

ServerHandshake::ServerHandshake(const ServerHandshakeConfig& config) : cfg_(config) {
    if ((cfg_.security == Security::psk) != (cfg_.psk.size() == kKeySize))
        throw std::invalid_argument(
            "KCP handshake: a key of 32 bytes goes with psk, none with plain");
    if (cfg_.max_remembered == 0) throw std::invalid_argument("KCP handshake: max_remembered is 0");
    if (!cfg_.psk.empty()) std::memcpy(psk_.data(), cfg_.psk.data(), kKeySize);
    cfg_.psk = {};  // only the copy is kept
}

void ServerHandshake::expire(uint64_t now) {
    std::erase_if(seen_, [now](const auto& e) { return e.second.expires < now; });
}

HelloOutcome ServerHandshake::on_hello(std::span<const uint8_t> datagram,
                                       std::span<const uint8_t> source, uint64_t now,
                                       RandomSource& random) {
    HelloOutcome out;
    HelloView h;
    if (parse_hello(datagram, h) != WireError::none || source.size() > Seen{}.source.size())
        return out;  // malformed
    if (h.security != cfg_.security) {
        out.verdict = HelloVerdict::wrong_security;
        return out;
    }
    const uint64_t skew = h.timestamp > now ? h.timestamp - now : now - h.timestamp;
    if (skew > cfg_.max_skew) {
        out.verdict = HelloVerdict::stale;
        return out;
    }
    if (cfg_.security == Security::psk) {
        Key key;
        early_.resize(h.body.size() - kTagSize);
        const bool ok = derive_hello_key(psk_, h.client_nonce, key) && aead_.set_key(key) &&
                        aead_.open(kHandshakeNonce, h.header, h.body, early_);
        key.fill(0);
        if (!ok) {
            early_.clear();
            out.verdict = HelloVerdict::forged;
            return out;
        }
    } else {
        early_.assign(h.body.begin(), h.body.end());
    }

    if (const auto it = seen_.find(h.client_nonce); it != seen_.end()) {
        const Seen& s = it->second;
        const bool same_source = s.source_len == source.size() &&
                                 std::equal(source.begin(), source.end(), s.source.begin());
        early_.clear();
        out.verdict = same_source ? HelloVerdict::duplicate : HelloVerdict::replayed;
        if (same_source) {
            out.conv = s.conv;
            out.answer = {s.answer.data(), s.answer_len};
        }
        return out;
    }
    if (seen_.size() >= cfg_.max_remembered) expire(now);
    if (seen_.size() >= cfg_.max_remembered) {
        early_.clear();
        out.verdict = HelloVerdict::busy;
        return out;
    }

    Nonce server_nonce;
    std::array<uint8_t, 4> conv_bytes{};
    uint32_t conv = 0;
    if (!random.fill(server_nonce)) {
        out.verdict = HelloVerdict::internal_error;
        return out;
    }
    for (int tries = 0; conv == 0 && tries < 8; ++tries) {
        if (!random.fill(conv_bytes)) break;
        conv = get_le32(conv_bytes.data());
    }
    if (conv == 0) {
        out.verdict = HelloVerdict::internal_error;
        return out;
    }

    Seen s;
    std::copy(source.begin(), source.end(), s.source.begin());
    s.source_len = source.size();
    s.expires = h.timestamp + cfg_.max_skew;
    s.conv = conv;
    s.answer_len = welcome_size(cfg_.security);
    write_welcome_header(s.answer.data(), cfg_.security, conv, server_nonce);
    if (cfg_.security == Security::psk) {
        Key welcome_key;
        std::array<uint8_t, kWelcomeHeader + kNonceSize> aad;
        std::memcpy(aad.data(), s.answer.data(), kWelcomeHeader);
        std::memcpy(aad.data() + kWelcomeHeader, h.client_nonce.data(), kNonceSize);
        const bool ok =
            derive_session(psk_, h.client_nonce, server_nonce, conv, welcome_key, out.secrets) &&
            aead_.set_key(welcome_key) &&
            aead_.seal(kHandshakeNonce, aad, {},
                       std::span<uint8_t>(s.answer.data() + kWelcomeHeader, kTagSize));
        welcome_key.fill(0);
        if (!ok) {
            early_.clear();
            out.verdict = HelloVerdict::internal_error;
            return out;
        }
    }
    const auto [it, inserted] = seen_.emplace(h.client_nonce, s);
    (void)inserted;
    out.verdict = HelloVerdict::accepted;
    out.conv = conv;
    out.answer = {it->second.answer.data(), it->second.answer_len};
    out.early_data = early_;
    return out;
}

}  // namespace pfp::kcp
