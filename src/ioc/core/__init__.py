"""The only shared code of the IOC. It never imports ``ioc.modules``, ``ioc.app``, ``ioc.cli`` or ``ioc.web``."""
