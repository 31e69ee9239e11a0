"""Gold: the topic library (主题库) built from silver for clinicians, researchers and managers."""
