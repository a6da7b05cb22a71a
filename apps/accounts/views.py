from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return render(request, "portal/home.html")


@login_required
def invitation_accept(request: HttpRequest, token: str) -> HttpResponse:
    raise NotImplementedError
