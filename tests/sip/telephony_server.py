"""Helpers for end-to-end SIP tests (the fixtures are in conftest.py)."""

import os

import sqlalchemy as sa

ETC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "etc")
SERVICE_NUMBERS = {"9196": "echo", "9197": "tone", "9198": "dtmf", "9300": "conference"}


class Server:
    """A started server and where it listens."""

    def __init__(self, process):
        self.process = process
        self.udp = int(process.wait_for(r"SIP/UDP listening on 127\.0\.0\.1:(\d+)").group(1))
        self.tcp = int(process.wait_for(r"SIP/TCP listening on 127\.0\.0\.1:(\d+)").group(1))
        self.http = process.http_port()



def bindings(db_url):
    """The sip_bindings rows: (aor, contact, user_agent)."""
    engine = sa.create_engine(db_url.replace("postgresql://", "postgresql+psycopg://"))
    with engine.connect() as connection:
        rows = connection.exec_driver_sql("SELECT aor, contact, user_agent FROM sip_bindings").all()
    engine.dispose()
    return [tuple(row) for row in rows]
