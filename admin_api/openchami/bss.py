"""(being written)"""

from admin_api.routing import Router

routers: list[Router] = []
