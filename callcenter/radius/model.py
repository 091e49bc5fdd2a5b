"""
What crosses the seam between the RADIUS protocol and the policy: requests
as the policy needs them (no packets, no shared secrets) and its answers.
"""

from dataclasses import dataclass, field
from typing import NamedTuple

__all__ = [
    "ACCOUNTING_OFF",
    "ACCOUNTING_ON",
    "INTERIM_UPDATE",
    "REJECT_REASONS",
    "START",
    "STOP",
    "AccessDecision",
    "AccessRequest",
    "AccountingRecord",
]

# Acct-Status-Type (RFC 2866 §5.1, RFC 2866's Accounting-On/Off).
START = "Start"
STOP = "Stop"
INTERIM_UPDATE = "Interim-Update"
ACCOUNTING_ON = "Accounting-On"
ACCOUNTING_OFF = "Accounting-Off"

# Why an Access-Request is rejected: the code in logs and the API, and the
# Reply-Message the NAS may show the investor, in Mandarin and English.
REJECT_REASONS = {
    "bad_password": ("用户名或密码错误。", "Wrong user name or password."),
    "disabled": ("上网账户已停用，请联系您的营业部。", "This internet account is disabled. Please contact your branch."),
    "quota_exhausted": ("本月上网时长已用完。", "This month's internet time is used up."),
    "already_online": ("该账户已在线，不能重复登录。", "This account is already online."),
    "locked": ("密码错误次数过多，账户已锁定。", "Too many wrong passwords: the account is locked."),
    "method_not_allowed": ("不支持该认证方式。", "This authentication method is not allowed for the account."),
}


class AccessRequest(NamedTuple):
    """
    An Access-Request, authenticated as coming from C{client} (the NAS's
    configured name).  C{method} is "pap" with C{password} (the decrypted
    User-Password, bytes), or "chap" with C{chap_id}, C{chap_challenge}
    and C{chap_response} (RFC 2865 §2.2: the challenge is CHAP-Challenge,
    or the Request Authenticator when there is none), or "mschap" /
    "mschapv2" (L{callcenter.radius.mschap}) with the same three (the
    response's Ident, MS-CHAP-Challenge, the NT-Response) and for
    version 2 C{peer_challenge}.

    Immutable, as a frozen dataclass would be, for a third of the cost of
    making one: one is made for every Access-Request.
    """

    client: str
    user_name: str
    method: str
    password: bytes = None
    chap_id: int = None
    chap_challenge: bytes = None
    chap_response: bytes = None
    nas_ip: str = None
    nas_identifier: str = None
    nas_port: int = None
    calling_station_id: str = None
    peer_challenge: bytes = None

    def __repr__(self):
        # Never a password in a log line or a traceback.
        return f"AccessRequest(client={self.client!r}, user_name={self.user_name!r}, method={self.method!r})"


@dataclass(frozen=True)
class AccessDecision:
    """
    Accept (with C{session_timeout} and C{idle_timeout} seconds, None for
    none) or reject with a reason (a key of L{REJECT_REASONS}).
    C{reply_message} is what the NAS may show the user.
    C{request_attributes}, when not None, makes attributes that belong to
    this one request's answer: C{request_attributes(secret,
    request_authenticator)} returns them encoded, to follow the others
    (MS-CHAP's, which name the response's Ident and hide the MPPE keys
    with the client's secret, RFC 2548 §2.4).
    """

    accepted: bool
    reason: str = None
    reply_message: str = None
    session_timeout: int = None
    idle_timeout: int = None
    attributes: dict = field(default_factory=dict)
    request_attributes: object = None

    @classmethod
    def reject(cls, reason, language="zh"):
        zh, en = REJECT_REASONS[reason]
        return cls(False, reason=reason, reply_message=en if language == "en" else zh)


class AccountingRecord(NamedTuple):
    """
    An Accounting-Request from C{client}.  Octet counts include the
    Gigawords attributes (RFC 2869 §5.1-2).  C{event_time} is when the NAS
    says it happened (Event-Timestamp, less Acct-Delay-Time), as POSIX
    seconds; None when the NAS sent neither and the time of arrival stands.

    A NamedTuple, as L{AccessRequest}, rather than a frozen dataclass:
    thousands are made a second and it costs a third as much to build.
    """

    client: str
    status_type: str
    session_id: str = None
    user_name: str = None
    nas_ip: str = None
    nas_identifier: str = None
    nas_port: int = None
    framed_ip: str = None
    calling_station_id: str = None
    session_time: int = None
    input_octets: int = None
    output_octets: int = None
    input_packets: int = None
    output_packets: int = None
    terminate_cause: str = None
    event_time: float = None
