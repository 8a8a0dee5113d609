#include "common/kcp/secure_channel.hpp"

#include <cstring>
#include <stdexcept>
#include <utility>

namespace pfp::kcp {

const char* to_string(ChannelError e) noexcept {
    switch (e) {
        case ChannelError::none:
            return "ok";
        case ChannelError::malformed:
            return "malformed datagram";
        case ChannelError::wrong_conv:
            return "datagram for another conversation";
        case ChannelError::bad_epoch:
            return "datagram from an unknown key epoch";
        case ChannelError::forged:
            return "datagram failed authentication";
        case ChannelError::replayed:
            return "replayed datagram";
        case ChannelError::exhausted:
            return "sequence space exhausted";
        case ChannelError::crypto:
            return "OpenSSL failure";
    }
    return "?";
}

SecureChannel::SecureChannel(Role role, uint32_t conv, Security security,
                             const SessionSecrets& secrets, uint64_t rekey_after)
    : conv_(conv),
      security_(security),
      send_dir_(role == Role::client ? Direction::client_to_server : Direction::server_to_client),
      recv_dir_(role == Role::client ? Direction::server_to_client : Direction::client_to_server),
      secrets_(secrets),
      rekey_after_(rekey_after == 0 ? 1 : rekey_after) {
    if (security_ != Security::psk) return;
    if (!key_for(send_aead_, secrets_.of(send_dir_), 0) ||
        !key_for(recv_aead_[1], secrets_.of(recv_dir_), 0) ||
        !key_for(recv_aead_[2], secrets_.of(recv_dir_), 1))
        throw std::runtime_error("KCP tunnel: deriving the session's keys failed (OpenSSL)");
    recv_keyed_ = {false, true, true};
}

bool SecureChannel::key_for(Aead& aead, const Key& secret, uint32_t epoch) noexcept {
    Key key;
    const bool ok = derive_epoch_key(secret, epoch, key) && aead.set_key(key);
    key.fill(0);
    return ok;
}

void SecureChannel::aad(std::span<const uint8_t> header, Direction d) noexcept {
    std::memcpy(aad_.data(), header.data(), kSealedHeader);
    aad_[kSealedHeader] = static_cast<uint8_t>(d);
}

ChannelError SecureChannel::seal(Type type, std::span<const uint8_t> body,
                                 std::vector<uint8_t>& out) {
    if (type == Type::hello || type == Type::welcome) return ChannelError::malformed;
    if (send_seq_ == UINT64_MAX) return ChannelError::exhausted;
    if (sent_in_epoch_ >= rekey_after_) {
        if (send_epoch_ == UINT32_MAX) return ChannelError::exhausted;
        if (security_ == Security::psk &&
            !key_for(send_aead_, secrets_.of(send_dir_), send_epoch_ + 1))
            return ChannelError::crypto;
        ++send_epoch_;
        sent_in_epoch_ = 0;
    }
    out.resize(kSealedHeader + body.size() + tag_size(security_));
    write_sealed_header(out.data(), type, conv_, send_epoch_, send_seq_);
    const std::span<uint8_t> rest(out.data() + kSealedHeader, out.size() - kSealedHeader);
    if (security_ == Security::psk) {
        aad({out.data(), kSealedHeader}, send_dir_);
        if (!send_aead_.seal(sealed_nonce(send_seq_), aad_, body, rest))
            return ChannelError::crypto;
    } else if (!body.empty()) {
        std::memcpy(rest.data(), body.data(), body.size());
    }
    ++send_seq_;
    ++sent_in_epoch_;
    ++stats_.sealed;
    return ChannelError::none;
}

ChannelError SecureChannel::open(std::span<const uint8_t> datagram, Type& type,
                                 std::vector<uint8_t>& body) {
    SealedView v;
    if (parse_sealed(datagram, v) != WireError::none) {
        ++stats_.malformed;
        return ChannelError::malformed;
    }
    if (v.conv != conv_) {
        ++stats_.malformed;
        return ChannelError::wrong_conv;
    }
    if (!replay_.check(v.seq)) {
        ++stats_.replayed;
        return ChannelError::replayed;
    }
    size_t slot = 3;
    if (v.epoch == recv_epoch_)
        slot = 1;
    else if (recv_epoch_ != UINT32_MAX && v.epoch == recv_epoch_ + 1)
        slot = 2;
    else if (recv_epoch_ != 0 && v.epoch == recv_epoch_ - 1)
        slot = 0;
    if (slot == 3 || (security_ == Security::psk && !recv_keyed_[slot])) {
        ++stats_.bad_epoch;
        return ChannelError::bad_epoch;
    }
    if (security_ == Security::psk) {
        if (v.body.size() < kTagSize) {
            ++stats_.forged;
            return ChannelError::forged;
        }
        body.resize(v.body.size() - kTagSize);
        aad(v.header, recv_dir_);
        if (!recv_aead_[slot].open(sealed_nonce(v.seq), aad_, v.body, body)) {
            body.clear();
            ++stats_.forged;
            return ChannelError::forged;
        }
    } else {
        body.assign(v.body.begin(), v.body.end());
    }
    replay_.commit(v.seq);
    type = v.type;
    ++stats_.opened;
    if (slot == 2) {
        // The peer moved to the next epoch: shift the keys down and derive the one after.
        std::swap(recv_aead_[0], recv_aead_[1]);
        std::swap(recv_aead_[1], recv_aead_[2]);
        recv_keyed_ = {recv_keyed_[1], recv_keyed_[2], false};
        ++recv_epoch_;
        if (security_ == Security::psk && recv_epoch_ != UINT32_MAX)
            recv_keyed_[2] = key_for(recv_aead_[2], secrets_.of(recv_dir_), recv_epoch_ + 1);
    }
    return ChannelError::none;
}

}  // namespace pfp::kcp
