"""From the home's manifest and store to the FeatureSet that every model consumes."""
