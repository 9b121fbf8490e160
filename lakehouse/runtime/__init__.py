"""Runtime: JVM jars, the Spark session, the local Kafka broker and process supervision."""
