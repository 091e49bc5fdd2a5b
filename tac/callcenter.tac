# twistd -ny tac/callcenter.tac
# The same server as "twistd -n callcenter"; the configuration file comes from
# $CALLCENTER_CONFIG (default etc/callcenter.toml).
from callcenter.tap import application

application = application()
