from twisted.application.service import ServiceMaker

callcenter = ServiceMaker(
    "callcenter",
    "callcenter.tap",
    "Contact-center platform for securities brokerages (every subsystem in one process)",
    "callcenter",
)
