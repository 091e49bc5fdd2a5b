"""aiosmtpd, the SMTP relay the e-mail tests talk to, as they start it."""

from aiosmtpd.controller import Controller


class EphemeralController(Controller):
    """aiosmtpd's Controller on port 0: its start-up probe must use the port the kernel chose."""

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()
