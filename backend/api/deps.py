"""What the routers take from the app, as FastAPI dependencies.

The app factory puts the project's objects on ``app.state`` once; a route names the ones it
needs (``disp: DispatcherDep``) instead of closing over the factory's locals, so each router
module holds no state and can be mounted on any app that has those objects.

Every dependency here is ``async``: FastAPI runs a sync dependency on a worker thread, and
health (and the lists) must answer from the event loop without waiting for one.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from backend.admission import AdmissionGate
from backend.agent import Dispatcher
from backend.api.checks import CachedChecks
from backend.api.listing import ListCaches
from backend.chat import ChatService
from backend.config import Settings
from backend.events import EventBus
from backend.store import Store


async def get_dispatcher(request: Request) -> Dispatcher:
    return request.app.state.dispatcher


async def get_store(request: Request) -> Store:
    return request.app.state.dispatcher.store


async def get_bus(request: Request) -> EventBus:
    return request.app.state.dispatcher.bus


async def get_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_chats(request: Request) -> ChatService:
    return request.app.state.chats


async def get_checks(request: Request) -> CachedChecks:
    return request.app.state.checks


async def get_gate(request: Request) -> AdmissionGate:
    return request.app.state.gate


async def get_list_caches(request: Request) -> ListCaches:
    return request.app.state.list_caches


DispatcherDep = Annotated[Dispatcher, Depends(get_dispatcher)]
StoreDep = Annotated[Store, Depends(get_store)]
BusDep = Annotated[EventBus, Depends(get_bus)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ChatsDep = Annotated[ChatService, Depends(get_chats)]
ChecksDep = Annotated[CachedChecks, Depends(get_checks)]
GateDep = Annotated[AdmissionGate, Depends(get_gate)]
ListCachesDep = Annotated[ListCaches, Depends(get_list_caches)]
