"""Playground traffic: a simulated shop, delivery faults, and a Kafka producer.

``shop`` simulates customers walking a funnel (clean events in event-time order);
``faults`` turns them into deliveries with retried duplicates, out-of-order and late
arrivals and malformed records, each labelled with its expected fate; ``producer`` sends
deliveries to Kafka at their arrival time (live) or as fast as possible (replay).
"""
