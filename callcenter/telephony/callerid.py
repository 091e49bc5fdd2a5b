"""Who is calling: the number phone trading audits for every action."""

from dataclasses import dataclass

from callcenter.sip.address import NameAddr


@dataclass(frozen=True)
class CallerID:
    number: str | None
    display_name: str | None
    # True when the number came from P-Asserted-Identity (RFC 3325): the
    # carrier vouches for it; a From header is whatever the caller typed.
    asserted: bool


def caller_of(request, trusted):
    """
    The caller of an INVITE: P-Asserted-Identity when it came from a trusted
    source (the carrier, our proxy: RFC 3325's trust domain), else From.  An
    identity asserted by anyone else is ignored: a caller could otherwise
    claim an investor's registered number and pass caller restriction.
    """
    for value in request.headers.get_all("P-Asserted-Identity") if trusted else ():
        try:
            identity = NameAddr.parse(value)
        except ValueError:
            continue
        number = _number(identity.uri)
        if number:
            return CallerID(number, identity.display_name, asserted=True)
    try:
        sender = NameAddr.parse(request.headers.get("From"))
    except (ValueError, TypeError):
        return CallerID(None, None, asserted=False)
    return CallerID(_number(sender.uri), sender.display_name, asserted=False)


def _number(uri):
    user = getattr(uri, "user", None)
    if user:
        return user
    if isinstance(uri, str) and uri.lower().startswith("tel:"):
        return uri[4:].split(";")[0]
    return None
