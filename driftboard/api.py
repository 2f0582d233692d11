"""The one base class every API viewset builds on: authentication, pagination, read/write rules."""

from rest_framework import permissions, viewsets


class IsStaffOrReadOnly(permissions.BasePermission):
    message = "Only staff may change this."

    def has_permission(self, request, view) -> bool:
        if not (request.user and request.user.is_authenticated):
            return False
        return request.method in permissions.SAFE_METHODS or request.user.is_staff


class BaseViewSet(viewsets.GenericViewSet):
    permission_classes = [permissions.IsAuthenticated]
