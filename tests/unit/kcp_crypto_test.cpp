// The KCP tunnel's cryptography through the project's wrappers (common/kcp/crypto.hpp): the RFC
// 5869 and RFC 8439 known answers, tag checks, the anti-replay window, and golden bytes of a
// handshake and of sealed datagrams for fixed keys and nonces (docs/kcp-tunnel.md; the expected
// bytes were computed by a separate implementation of that document).
#include <gtest/gtest.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/kcp/crypto.hpp"
#include "common/kcp/key_schedule.hpp"
#include "common/kcp/replay_window.hpp"

namespace pfp::kcp {
namespace {

using Bytes = std::vector<uint8_t>;

Bytes Hex(const std::string& h) {
    Bytes b;
    for (size_t i = 0; i + 1 < h.size(); i += 2)
        b.push_back(static_cast<uint8_t>(std::stoi(h.substr(i, 2), nullptr, 16)));
    return b;
}
Bytes Range(uint8_t first, size_t n) {
    Bytes b(n);
    for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(first + i);
    return b;
}

TEST(KcpCrypto, HkdfSha256Rfc5869CaseA1) {
    const Bytes ikm(22, 0x0b);
    const Bytes salt = Range(0x00, 13);
    const Bytes info = Range(0xf0, 10);
    Key prk;
    ASSERT_TRUE(hkdf_extract(salt, ikm, prk));
    EXPECT_EQ(Bytes(prk.begin(), prk.end()),
              Hex("077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5"));
    Bytes okm(42);
    ASSERT_TRUE(hkdf_expand(prk, info, okm));
    EXPECT_EQ(okm, Hex("3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf3400"
                       "7208d5b887185865"));
}

TEST(KcpCrypto, HkdfSha256Rfc5869CaseA3EmptySaltAndInfo) {
    const Bytes ikm(22, 0x0b);
    Key prk;
    ASSERT_TRUE(hkdf_extract({}, ikm, prk));
    EXPECT_EQ(Bytes(prk.begin(), prk.end()),
              Hex("19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04"));
    Bytes okm(42);
    ASSERT_TRUE(hkdf_expand(prk, {}, okm));
    EXPECT_EQ(okm, Hex("8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d20"
                       "1395faa4b61a96c8"));
    Bytes too_long(255 * 32 + 1);
    EXPECT_FALSE(hkdf_expand(prk, {}, too_long));
}

const char kSunscreen[] =
    "Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, "
    "sunscreen would be it.";

TEST(KcpCrypto, ChaCha20Poly1305Rfc8439Section282) {
    const Bytes plaintext(kSunscreen, kSunscreen + sizeof(kSunscreen) - 1);
    ASSERT_EQ(plaintext.size(), 114u);
    const Bytes aad = Hex("50515253c0c1c2c3c4c5c6c7");
    const Bytes key = Range(0x80, 32);
    Bytes nonce = Hex("07000000");
    const Bytes iv = Range(0x40, 8);
    nonce.insert(nonce.end(), iv.begin(), iv.end());
    Aead aead;
    ASSERT_TRUE(aead.set_key(std::span<const uint8_t, kKeySize>(key.data(), kKeySize)));
    const std::span<const uint8_t, kAeadNonceSize> n(nonce.data(), kAeadNonceSize);
    Bytes sealed(plaintext.size() + kTagSize);
    ASSERT_TRUE(aead.seal(n, aad, plaintext, sealed));
    const Bytes expect = Hex(
        "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d63dbea45e8ca9671282fafb69"
        "da92728b1a71de0a9e060b2905d6a5b67ecd3b3692ddbd7f2d778b8c9803aee328091b58fab324e4fad67594"
        "5585808b4831d7bc3ff4def08e4b7a9de576d26586cec64b6116"
        "1ae10b594f09e26a7e902ecbd0600691");
    EXPECT_EQ(sealed, expect);

    Bytes opened(plaintext.size());
    ASSERT_TRUE(aead.open(n, aad, sealed, opened));
    EXPECT_EQ(opened, plaintext);
    // Any flipped bit, in ciphertext, tag or associated data, fails the tag.
    for (size_t i = 0; i < sealed.size(); i += 7) {
        Bytes bad = sealed;
        bad[i] ^= 0x10;
        EXPECT_FALSE(aead.open(n, aad, bad, opened)) << "byte " << i;
    }
    Bytes bad_aad = aad;
    bad_aad[0] ^= 1;
    EXPECT_FALSE(aead.open(n, bad_aad, sealed, opened));
    // The context still works after failures.
    ASSERT_TRUE(aead.open(n, aad, sealed, opened));
    EXPECT_EQ(opened, plaintext);
}

TEST(KcpCrypto, AeadWithoutAKeyOrWithWrongSizesRefuses) {
    Aead aead;
    const std::array<uint8_t, kAeadNonceSize> nonce{};
    Bytes out(kTagSize);
    EXPECT_FALSE(aead.seal(nonce, {}, {}, out));
    const Key key{};
    ASSERT_TRUE(aead.set_key(key));
    Bytes small(kTagSize - 1);
    EXPECT_FALSE(aead.seal(nonce, {}, {}, small));
    EXPECT_FALSE(aead.open(nonce, {}, small, small));
}

TEST(KcpCrypto, RandomFillsDistinctBytes) {
    Nonce a{}, b{};
    ASSERT_TRUE(fill_random(a));
    ASSERT_TRUE(fill_random(b));
    EXPECT_NE(a, b);
    EXPECT_NO_THROW(warm_up_crypto());
}

TEST(KcpReplayWindow, AcceptsFreshRefusesSeenAndTooOld) {
    ReplayWindow w;
    EXPECT_TRUE(w.check(5));
    w.commit(5);
    EXPECT_FALSE(w.check(5));
    EXPECT_TRUE(w.check(4));  // below, inside the window, unseen
    EXPECT_TRUE(w.check(0));
    w.commit(3);
    EXPECT_FALSE(w.check(3));
    w.commit(100);
    EXPECT_TRUE(w.check(37));   // 100 - 63: the window's last slot
    EXPECT_FALSE(w.check(36));  // older than the window
    EXPECT_FALSE(w.check(5));
    w.commit(37);
    EXPECT_FALSE(w.check(37));
    w.commit(101);  // shifting by one keeps what was seen
    EXPECT_FALSE(w.check(100));
    EXPECT_FALSE(w.check(37));  // now 64 below the top: out of the window
    EXPECT_TRUE(w.check(38));
    EXPECT_TRUE(w.check(99));
    w.commit(1000);  // a jump clears the window
    EXPECT_FALSE(w.check(101));
    EXPECT_TRUE(w.check(999));
    ReplayWindow top;
    top.commit(UINT64_MAX - 1);
    EXPECT_TRUE(top.check(UINT64_MAX));
    top.commit(UINT64_MAX);
    EXPECT_FALSE(top.check(UINT64_MAX));
    EXPECT_EQ(top.highest(), UINT64_MAX);
}

TEST(KcpKeySchedule, SealedNonceIsZeroPaddedLittleEndianSequence) {
    const auto n = sealed_nonce(0x0102030405060708);
    EXPECT_EQ(Bytes(n.begin(), n.end()), Hex("000000000807060504030201"));
}

TEST(KcpKeySchedule, KeysDifferByDirectionConversationAndEpoch) {
    const Bytes psk = Range(0, 32);
    const std::span<const uint8_t, kKeySize> k(psk.data(), kKeySize);
    Nonce cn{}, sn{};
    cn[0] = 1;
    Key w1, w2;
    SessionSecrets s1, s2;
    ASSERT_TRUE(derive_session(k, cn, sn, 1, w1, s1));
    ASSERT_TRUE(derive_session(k, cn, sn, 2, w2, s2));
    EXPECT_NE(s1.client_to_server, s1.server_to_client);
    EXPECT_NE(s1.client_to_server, s2.client_to_server);
    EXPECT_NE(w1, w2);
    Key e0, e1;
    ASSERT_TRUE(derive_epoch_key(s1.client_to_server, 0, e0));
    ASSERT_TRUE(derive_epoch_key(s1.client_to_server, 1, e1));
    EXPECT_NE(e0, e1);
}

}  // namespace
}  // namespace pfp::kcp
