# frozen_string_literal: true

module Iodine
  # A WebSocket, SSE or raw connection (server or client), passed to every callback of its
  # handler (`on_open`, `on_message`, `on_drained`, `on_shutdown`, `on_close`, and `ping` for
  # raw ones). The callbacks of one connection never overlap and keep their order. `write`,
  # `close`, `open?`, `pending`, `protocol`, `timeout`, `env` and `handler` are native
  # (ext/iodine/src/ruby_api/connection.rs).
  #
  # Raw: `on_message` gets what arrived, at most 64 KiB per call, as a binary String; `write`
  # sends bytes as they are; `ping(client)` is called after `timeout` quiet seconds (300 for
  # raw listeners and clients until `timeout=` sets it; an `upgrade.tcp` connection keeps the
  # HTTP keep-alive timeout). When the peer finishes sending, the connection closes once the
  # callbacks for what came before have run (their writes still go out).
  #
  # SSE: `write(data)` sends one event whose lines are `data:` lines; the fields go along as
  # keywords or a Hash: `write(data, event: "update", id: "7", retry: 3000)`.
  class Connection
    # The pub/sub draft's API version (the C gem answered 0).
    def pubsub?
      0
    end

    # Subscribes this connection; cancelled when it closes. Without a block (or `handler:`)
    # each message is written to the client as it is (WebSocket text frames, `as: :binary`
    # for binary; SSE `data:` events) without entering Ruby. With one, it runs as
    # `block.call(channel, message)` in this connection's turn. Returns the channel as given,
    # or nil when the connection is closed (or for `as: :binary` on an event stream).
    def subscribe(*args, &block)
      channel, opts = Base::PubSubArgs.subscription(args)
      handler = opts[:handler] || block
      raise TypeError, "the handler must answer call(channel, message)" if handler && !handler.respond_to?(:call)

      name = channel.to_s.b
      pattern = opts[:match] == :redis
      return nil unless __subscribe(name, pattern, opts[:as] == :binary, handler)

      PubSub.__drain
      channel
    end

    # Publishes to everyone subscribed (this connection included); see Iodine.publish.
    def publish(*args)
      Iodine.publish(*args)
    end
  end
end
