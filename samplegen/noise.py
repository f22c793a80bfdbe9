"""The noise knobs of the generator: every imperfection of real exports that identity resolution must survive."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


def _rate(default: float, help: str):
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class NoiseRates:
    """Probabilities, each in [0, 1]. The unit each one counts in is part of its help text (and of docs)."""

    no_unionid: float = _rate(
        0.03, "per person and app (Official Account, mini-program, WeCom): the app side is unbound, so every "
              "record of that person in that app lacks the unionid (the exception: the brand's apps are bound)")
    two_phones: float = _rate(0.08, "per person: has a second mobile number, used on some typed records")
    family_phone: float = _rate(
        0.03, "per person: uses the phone of another person of the household as their own (two people, one phone)")
    gift_order: float = _rate(0.05, "per order: receiver name and phone are another person's")
    gift_customer: float = _rate(
        0.25, "per gift order: the receiver is another customer of the brand, whose number appears on their own "
              "records too (else someone outside the brand's customers)")
    masked_phone: float = _rate(
        0.05, "per phone value in receiver phones, Taobao 联系手机 and store-registered CRM 手机号: masked "
              "(138****1234)")
    cipher_phone: float = _rate(0.02, "per receiver phone value: ciphertext (##..., $$...)")
    junk_phone: float = _rate(
        0.02, "per typed phone value (receiver phones, 联系手机, store-registered CRM, WeCom remark_mobiles): a junk "
              "value (13800138000, 00000000000, a staff member's own number, ...)")
    phone_format: float = _rate(
        0.10, "per phone value in any field: written as +86 139 1234 5678, 86-139..., 139-1234-5678, ...")
    follower_reexport: float = _rate(
        0.20, "per follower still following at the main export: appears again in the later Official Account "
              "export")
    reexport_unfollow: float = _rate(0.10, "per re-exported follower: has unfollowed by then (subscribe: 0)")
    order_update: float = _rate(
        0.03, "per paid, unrefunded order: appears again in the later order export, now fully refunded")
    refund_full: float = _rate(0.05, "per order: fully refunded")
    refund_partial: float = _rate(0.03, "per order: partially refunded")
    cancelled: float = _rate(0.04, "per order: cancelled before payment")
    unpaid: float = _rate(0.03, "per order: still waiting for payment")
    malformed: float = _rate(
        0.005, "per row of the mini-program login, order and CRM exports: one broken field (amount abc or "
               "negative, unparseable time, missing openid, impossible birthday)")
    second_card: float = _rate(
        0.05, "per CRM member with two phones: holds a second member card registered with the other phone")

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"noise rate {f.name} must be in [0, 1], got {value!r}")
        # Each phone value draws one of these, each order one status: their shares cannot exceed the whole.
        if self.junk_phone + self.masked_phone + self.cipher_phone + self.phone_format > 1.0:
            raise ValueError("junk_phone + masked_phone + cipher_phone + phone_format must be <= 1")
        if self.refund_full + self.refund_partial + self.cancelled + self.unpaid > 1.0:
            raise ValueError("refund_full + refund_partial + cancelled + unpaid must be <= 1")

    def as_dict(self) -> dict[str, float]:
        return asdict(self)

    @staticmethod
    def help_texts() -> dict[str, str]:
        return {f.name: f.metadata["help"] for f in fields(NoiseRates)}
