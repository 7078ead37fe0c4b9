# frozen_string_literal: true

module Iodine
  # Action Cable on iodine's own WebSocket layer.
  #
  # Stock Action Cable takes each WebSocket with `rack.hijack` and speaks the protocol in Ruby
  # (websocket-driver, its own nio4r event-loop thread reading every socket). When an app that
  # loaded Action Cable runs on iodine, `Iodine.start` calls `Cable.install`, and from then on
  # a cable request that iodine already recognised as a WebSocket upgrade (`rack.upgrade?` is
  # `:websocket`, over HTTP/1.1 or HTTP/2) is answered with `rack.upgrade` instead: iodine
  # does the handshake, the framing, the pings and the writes, and hands each message to
  # Action Cable's connection object as its own socket would. Channels, `stream_from`,
  # `transmit`, `identified_by` and `connect`/`reject_unauthorized_connection` run unchanged,
  # on Action Cable's worker pool as before.
  #
  # A stream with Action Cable's default handler (`stream_from name` with no block, callback
  # or coder) on such a connection takes a shorter road too. Stock Action Cable posts each
  # broadcast, once per subscriber, to its worker pool, which decodes the JSON, logs (the
  # debug line is built even when not written), instruments and encodes it again, to send
  # what it received wrapped in `{"identifier":...,"message":...}`. Here the broadcast's text
  # is checked to be JSON once, and each subscriber gets the wrapper written around it
  # directly. A stream keeps the stock road when its channel gives a handler or a coder, when
  # the logger writes debug lines, or when something listens to `transmit.action_cable`.
  #
  # Set IODINE_ACTION_CABLE=hijack in the environment to keep the stock path.
  module Cable
    class << self
      # Makes Action Cable's WebSocket wrapper use iodine's connection when the request is
      # one iodine can upgrade. Idempotent; does nothing when Action Cable is not loaded or
      # IODINE_ACTION_CABLE=hijack.
      def install
        return false unless defined?(::ActionCable::Connection)
        return false if ENV["IODINE_ACTION_CABLE"] == "hijack"

        socket = ::ActionCable::Connection::WebSocket # autoloaded: this loads it
        socket.prepend(Upgrade) unless socket <= Upgrade
        channel = ::ActionCable::Channel::Base
        channel.prepend(Streaming) unless channel <= Streaming
        connection = ::ActionCable::Connection::Base
        connection.include(Connected) unless connection <= Connected
        true
      rescue LoadError, NameError => e
        # An Action Cable this doesn't know: it keeps its own (hijack) path.
        Base.log(2, "Action Cable stays on rack.hijack: #{e.class}: #{e.message}")
        false
      end

      # Whether `message` (a broadcast, handed to every subscriber as the same String) is
      # JSON; parsed once per broadcast, not once per subscriber.
      def json?(message)
        last = @last_checked
        return last[1] if last && last[0].equal?(message)

        valid = begin
          ::Iodine::JSON.parse(message, max_nesting: false)
          true
        rescue ::Iodine::JSON::ParserError
          false
        end
        @last_checked = [message, valid].freeze
        valid
      end

      # Whether Action Cable's logger writes debug lines (which the stock road writes per
      # transmission).
      def debugging?(server)
        logger = server.logger
        logger.respond_to?(:debug?) ? logger.debug? : true
      end

      # Whether install took effect (for logs and tests).
      def installed?
        defined?(::ActionCable::Connection::WebSocket) && ::ActionCable::Connection::WebSocket <= Upgrade ? true : false
      end
    end

    # Prepended to ActionCable::Connection::WebSocket: its whole API (possible?, alive?,
    # transmit, close, protocol, rack_response) forwards to the object in @websocket, so
    # putting a Socket there is all it takes.
    module Upgrade
      def initialize(env, event_target, event_loop, protocols: ::ActionCable::INTERNAL[:protocols])
        if env["rack.upgrade?"] == :websocket
          @websocket = Socket.new(env, event_target, protocols)
        else
          super
        end
      end

      # The iodine Socket in use, or nil (stock Action Cable's ClientSocket, or none).
      def iodine_socket
        @websocket if @websocket.is_a?(Socket)
      end
    end

    # Prepended to ActionCable::Channel::Base: the handler of a default stream on an iodine
    # socket writes the broadcast straight to it (see Cable).
    module Streaming
      private

      def worker_pool_stream_handler(broadcasting, user_handler, coder: nil)
        socket = !user_handler && !coder && connection.respond_to?(:iodine_socket, true) && connection.send(:iodine_socket)
        return super unless socket && !Cable.debugging?(connection.server) &&
                            !::ActiveSupport::Notifications.notifier.listening?("transmit.action_cable")

        via = "streamed from #{broadcasting}"
        prefix = %({"identifier":#{::ActiveSupport::JSON.encode(identifier)},"message":).freeze
        lambda do |message|
          if Cable.json?(message)
            socket.transmit("#{prefix}#{message}}")
          else
            logger.error "#{self.class.name} dropped a broadcast that is not JSON (#{via}): #{message.inspect.truncate(300)}"
          end
        end
      end
    end

    # Given to ActionCable::Connection::Base: its iodine Socket, or nil.
    module Connected
      private

      def iodine_socket
        websocket.iodine_socket
      end
    end

    # One Action Cable WebSocket served by iodine: the handler iodine calls (on_open,
    # on_message, on_shutdown, on_close) and the socket Action Cable writes to (transmit,
    # close, alive?, protocol), in the shape of Action Cable's ClientSocket.
    class Socket
      attr_reader :env, :protocol

      # `protocols`: the subprotocols the server speaks (Action Cable's, best first); the
      # first one the client offers is chosen, as websocket-driver chooses.
      def initialize(env, event_target, protocols)
        @env = env
        @event_target = event_target
        offered = env["HTTP_SEC_WEBSOCKET_PROTOCOL"].to_s.split(/\s*,\s*/)
        @protocol = offered.find { |p| protocols.include?(p) }
        @client = nil
        @closed = false
      end

      # Hands the request to iodine: it answers 101 with the chosen subprotocol (iodine does
      # not negotiate one itself), then calls on_open.
      def rack_response
        @env["rack.upgrade"] = self
        headers = {}
        headers["Sec-WebSocket-Protocol"] = @protocol if @protocol
        [101, headers, []]
      end

      # Sends one message (a JSON String from Action Cable: a text frame); false once closed.
      def transmit(message)
        client = @client
        return false unless client&.open?

        case message
        when String then client.write(message.encoding == Encoding::UTF_8 ? message : message.dup.force_encoding(Encoding::UTF_8))
        when Numeric then client.write(message.to_s)
        when Array then client.write(message.pack("C*"))
        else return false
        end
        true
      end

      # Closes after what was transmitted is sent. Action Cable passes no code.
      def close(_code = nil, _reason = nil)
        @client&.close
        nil
      end

      # Open and not closing (Action Cable checks before it dispatches a message).
      def alive?
        @client&.open? ? true : false
      end

      # iodine: the handshake is done.
      def on_open(client)
        @client = client
        @event_target.on_open
      end

      # iodine: one whole message (a fresh String, safe to keep for Action Cable's pool).
      def on_message(_client, data)
        @event_target.on_message(data)
      end

      # iodine: the server is stopping and will close this connection; tell the client to
      # come back (Action Cable's own restart message) while it still can be written to.
      def on_shutdown(client)
        reasons = ::ActionCable::INTERNAL[:disconnect_reasons]
        client.write(::ActiveSupport::JSON.encode(type: ::ActionCable::INTERNAL[:message_types][:disconnect],
                                                  reason: reasons[:server_restart], reconnect: true))
      end

      # iodine: the connection is gone (for any reason); Action Cable unsubscribes its
      # channels and runs `disconnect` on its pool. Called once.
      def on_close(_client)
        return if @closed

        @closed = true
        @event_target.on_close("", 1000)
      end
    end
  end
end
