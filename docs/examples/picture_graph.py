import tether


class Database(tether.Service): ...


class Cache(tether.Service):
    def on_reload(self) -> None: ...


class Search(tether.Service): ...


class Api(tether.Service):
    def __init__(self) -> None:
        self.db = Database()
        self.cache = Cache()
        self.search = Search()

    @property
    def dependencies(self) -> list[tether.Service | list[tether.Service]]:
        return [self.db, [self.cache, self.search]]  # db first, then both together


class Loop(tether.Service):
    def __init__(self) -> None:
        self.other = Other(self)

    @property
    def dependencies(self) -> list[tether.Service]:
        return [self.other]


class Other(tether.Service):
    def __init__(self, back: Loop) -> None:
        self.back = back

    @property
    def dependencies(self) -> list[tether.Service]:
        return [self.back]


api = Api()
print(tether.graph(api))  # text: what `tether graph app:api` prints
print(tether.graph(api, format="mermaid"))  # or "dot", for Graphviz
try:
    tether.check(Loop())  # validate without starting anything
except tether.DependencyCycleError as error:
    print(error)
