"""A URLconf of throwaway DRF views, to pin the API's error format."""

from django.urls import path
from rest_framework import serializers
from rest_framework.decorators import api_view, permission_classes
from rest_framework.exceptions import NotFound, Throttled
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.response import Response


class AmountSerializer(serializers.Serializer):
    amount = serializers.IntegerField(min_value=1)
    note = serializers.CharField(max_length=5, required=False)


@api_view(["POST"])
@permission_classes([AllowAny])
def validate(request):
    serializer = AmountSerializer(data=request.data)
    serializer.is_valid(raise_exception=True)
    return Response(serializer.validated_data)


@api_view(["GET"])
@permission_classes([IsAuthenticated])
def private(request):
    return Response({"ok": True})


@api_view(["GET"])
@permission_classes([AllowAny])
def missing(request):
    raise NotFound("No token with that id.")


@api_view(["GET"])
@permission_classes([AllowAny])
def throttled(request):
    raise Throttled(wait=30)


urlpatterns = [
    path("validate/", validate),
    path("private/", private),
    path("missing/", missing),
    path("throttled/", throttled),
]
