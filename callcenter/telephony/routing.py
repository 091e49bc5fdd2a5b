"""
Where a dialled number goes.  Public service numbers (echo test, hotline,
IVR) answer any caller, as a carrier delivers them.  Everything else — our
extensions and numbers out through a carrier trunk — is for authenticated
extensions only (or for a trusted source such as our own Kamailio, which
authenticated them): no toll fraud through us, and a scanner learns
nothing about which extensions exist, since it is challenged before any
lookup.
"""

import secrets
from dataclasses import dataclass

from twisted.internet import defer

from callcenter.sip.authn import Authenticated
from callcenter.sip.message import make_response
from callcenter.telephony.callerid import CallerID


@dataclass(frozen=True)
class TrunkRoute:
    """Numbers starting with C{prefix} go out through C{trunk}, C{strip} digits removed first."""

    prefix: str
    trunk: object
    strip: int = 0


class Router:
    def __init__(self, public, authenticator, accounts, connector, trunk_routes=(), trusted=lambda host: False):
        """
        @param public: dialled number -> application, for anyone.
        @param authenticator: an L{callcenter.sip.authn.Authenticator}.
        @param accounts: the L{callcenter.sip.accounts.AccountCache}: its
            names are the extension numbers.
        @param connector: a L{callcenter.telephony.b2bua.Connector}.
        @param trunk_routes: L{TrunkRoute}s, longest prefix wins.
        @param trusted: C{host -> bool}, sources that need no authentication.
        """
        self._public = dict(public)
        self._authenticator = authenticator
        self._accounts = accounts
        self._connector = connector
        self._trunk_routes = sorted(trunk_routes, key=lambda r: len(r.prefix), reverse=True)
        self._trusted = trusted

    @defer.inlineCallbacks
    def transfer_target(self, number):
        """
        The application a blind transfer to C{number} runs on the
        transferred party, or None.  Public numbers and our extensions only:
        the far end of a call asks this inside a dialog, with no challenge,
        so nothing here may cost a toll.
        """
        application = self._public.get(number)
        if application is not None:
            return application
        if (yield self._accounts.lookup(number)) is not None:
            return self._connector.to_extension(number)
        return None

    @defer.inlineCallbacks
    def route(self, request, source, caller):
        """
        Fires with C{(application, caller)} for the call, or with the
        response to refuse it with (a 407 challenge, 403, 404).  An
        authenticated caller is known by its extension, whatever its From
        says.
        """
        number = getattr(request.sip_uri, "user", None)
        application = self._public.get(number)
        if application is not None:
            return application, caller
        if not self._trusted(source.address[0]):
            outcome = yield self._authenticator.authenticate(request, source, proxy=True)
            if not isinstance(outcome, Authenticated):
                return outcome
            caller = CallerID(outcome.username, outcome.display_name or caller.display_name, asserted=True)
        if number and (yield self._accounts.lookup(number)) is not None:
            return self._connector.to_extension(number), caller
        for route in self._trunk_routes:
            if number and number.startswith(route.prefix) and len(number) > route.strip:
                return self._connector.through_trunk(route.trunk, number[route.strip :]), caller
        return make_response(request, 404, "Not Found", to_tag=secrets.token_hex(6))
