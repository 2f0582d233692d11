"""The one base class every API viewset builds on: authentication, pagination, read/write rules.

Who may write what is decided by the role permissions in driftboard/roles.py.
"""

from rest_framework import permissions, viewsets


class BaseViewSet(viewsets.GenericViewSet):
    permission_classes = [permissions.IsAuthenticated]
