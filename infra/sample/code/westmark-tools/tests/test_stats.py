from westmark.records import Town
from westmark.stats import by_river, largest, mean_population


def test_mean_population():
    towns = [Town("Arvel", "Senna", 100), Town("Ilsby", "Oss", 300)]
    assert mean_population(towns) == 200


def test_by_river_groups_towns():
    towns = [Town("Arvel", "Senna", 100), Town("Dunholt", "Senna", 50)]
    assert list(by_river(towns)) == ["Senna"]


def test_largest_orders_by_population():
    towns = [Town("A", "x", 1), Town("B", "x", 3), Town("C", "x", 2)]
    assert [t.name for t in largest(towns, 2)] == ["B", "C"]
