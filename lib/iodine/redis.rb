# frozen_string_literal: true

module Iodine
  module PubSub
    # Pub/sub through Redis: every iodine server (each a cluster of any size) that uses the
    # same Redis shares its channels. `Redis.new(url, ping: 0)` attaches itself: every channel
    # and pattern subscribed anywhere in the cluster is subscribed in Redis (by its first
    # subscriber, unsubscribed after its last one). Publishing through it (`publish`, or
    # `Iodine.publish` when it is `PubSub.default`, as `iodine -r URL` makes it) sends
    # PUBLISH; Redis hands the message to every subscribed server, this one included, and
    # each subscriber gets it once.
    #
    # Make it before `Iodine.start` (in a cluster: in the master, as the CLI does). A cluster
    # holds its two Redis connections (SUBSCRIBE, and commands) in a small Redis process of
    # its own; a single process holds them itself. Both reconnect with backoff, resubscribe,
    # and send the commands that waited meanwhile.
    class Redis < Engine
      # A Redis error reply (`ERR ...`, `WRONGTYPE ...`), or a command iodine could not send
      # (its message starts with `ERR iodine:`), as a `cmd` block receives it.
      class Error < StandardError; end

      # The URL given to `new`.
      attr_reader :url

      # `url`: `redis://[user:password@]host[:port][/db]` (also `redis-cluster://` and
      # `redis-sentinel://`, as the fred crate reads them); `ping:` seconds between PINGs
      # (0..255; 0: every 300 s). An unanswered PING reconnects.
      def initialize(url, opts = nil, ping: nil)
        super()
        raise TypeError, "the Redis URL must be a String" unless url.is_a?(String)
        raise ArgumentError, "the Redis URL is longer than 4096 bytes" if url.bytesize > 4096

        ping = opts[:ping] if ping.nil? && opts.is_a?(Hash)
        ping = 0 if ping.nil?
        raise TypeError, "ping must be an Integer (seconds)" unless ping.is_a?(Integer)
        raise ArgumentError, "ping must be 0..255 seconds" unless (0..255).cover?(ping)

        @url = url
        @id = Base.redis_new(url, ping)
        PubSub.attach(self)
      end

      # Hook: a channel's first subscriber in the cluster (the master tells the Redis process).
      def subscribe(channel, match = nil)
        Base.redis_interest(@id, channel.to_s.b, match ? true : false, true)
      end

      # Hook: a channel's last subscriber left.
      def unsubscribe(channel, match = nil)
        Base.redis_interest(@id, channel.to_s.b, match ? true : false, false)
      end

      # Publishes through Redis (never delivered here directly: it comes back from Redis).
      def publish(channel, message)
        channel, message, = Base::PubSubArgs.publication([channel, message])
        Base.redis_publish(@id, channel.to_s.b, message)
      end

      # Sends a Redis command; the block gets the reply on a worker thread of this process:
      # bulk → String (binary), integer → Integer, array → Array, nil → nil, status → String,
      # an error → a `Redis::Error`. Arguments: String, Symbol, Integer, Float, nil (an empty
      # string), true, false ("true", "false"). (P)SUBSCRIBE is refused: subscribe with
      # `Iodine.subscribe`. Returns the engine.
      def cmd(*args, &block)
        raise ArgumentError, "a Redis command is required" if args.empty?

        Base.redis_cmd(@id, args.map { |arg| Redis.argument(arg) }, block)
        self
      end

      # The engine's counters: `connected` (the subscriber is connected), `reconnects`,
      # `messages_in` (from Redis), `messages_out` (PUBLISHes acknowledged), `commands`
      # (answered), `queued` (waiting to be sent).
      def stats
        Base.redis_stats(@id)
      end

      def inspect
        "#<Iodine::PubSub::Redis #{Base.redis_display_url(@id)}>"
      end

      # A command argument as the String sent.
      def self.argument(arg)
        case arg
        when String then arg
        when Symbol, Integer, Float, true, false then arg.to_s
        when nil then ""
        else raise ArgumentError, "a Redis argument must be a String, Symbol, Integer, Float, nil, true or false (got #{arg.class})"
        end
      end
    end
  end
end
