"""Host-side science: anatomy tables, model builder, personalisation, population, simulation."""
