"""The Open Inference Protocol over gRPC: KServe's grpc_predict_v2.proto, served per worker.

grpc_predict_v2.proto is KServe's, unchanged; its *_pb2* stubs are generated (make
grpc-stubs). convert.py turns messages into what REST's infer reads and back; servicer.py is
the service; server.py starts it. Imported only in the workers (server/grpcside.py), after fork.
"""
