"""Table schemas, declared once (:mod:`schemas.tables`) and rendered for Arrow and Spark."""
