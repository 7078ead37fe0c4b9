# frozen_string_literal: true

module Iodine
  # Pub/Sub engines: where `Iodine.publish` sends a message. In a cluster CLUSTER reaches
  # every process, SIBLINGS every other one, PUBLISH2ROOT the master, PROCESS this one; a
  # message is routed through the master only to the workers that subscribe to its channel.
  # In one process CLUSTER, PROCESS and PUBLISH2ROOT deliver here and SIBLINGS reaches nobody.
  # A Ruby engine subclasses Engine and overrides its hooks.
  module PubSub
    # The base of pub/sub engines. Hooks (called with the GVL, must not raise): `subscribe(channel,
    # match)` and `unsubscribe(channel, match)` (match: true for patterns, else nil), and
    # `publish(channel, message)` when a publish targets this engine. An attached engine hears
    # `subscribe` once per channel per process (in a cluster's master: per cluster) when its
    # first subscriber appears, of any kind (Iodine.subscribe or a connection's), and
    # `unsubscribe` after its last one left.
    class Engine
      def initialize; end

      # Told about a channel this process subscribed to.
      def subscribe(_channel, _match = nil); end

      # Told about a channel this process no longer subscribes to.
      def unsubscribe(_channel, _match = nil); end

      # Publishes through this engine; a Ruby engine delivers into iodine with
      # `Iodine.publish(channel, message, false)`.
      def publish(_channel, _message); end
    end

    # The engines built into iodine: which processes a message reaches.
    class BuiltIn < Engine
      attr_reader :name

      def initialize(name, reach)
        super()
        @name = name
        @reach = reach
      end

      # Delivers to the processes of the engine's reach; always true.
      def publish(channel, message)
        if @reach == :process
          Base.publish_local(channel, message)
        else
          Base.publish_cluster(channel, message, @reach)
        end
        true
      end

      def inspect
        "#<Iodine::PubSub::#{@name}>"
      end
    end

    CLUSTER = BuiltIn.new("CLUSTER", :cluster)
    PROCESS = BuiltIn.new("PROCESS", :process)
    SIBLINGS = BuiltIn.new("SIBLINGS", :siblings)
    PUBLISH2ROOT = BuiltIn.new("PUBLISH2ROOT", :root)

    @default = nil
    @attached = []
    # Hands the interest changes over in order, one thread at a time (a hook may subscribe).
    @telling = Monitor.new

    class << self
      # The engine `publish` uses when given none (CLUSTER unless set).
      def default
        @default ||= CLUSTER
      end

      # Sets the default engine (nil: CLUSTER); returns it.
      def default=(engine)
        engine = CLUSTER if engine.nil?
        raise TypeError, "not a valid engine" unless engine.is_a?(Engine)

        @default = engine
      end

      # Attaches an engine: it hears about every subscribed channel, now and later.
      def attach(engine)
        raise TypeError, "not a valid engine" unless engine.is_a?(Engine)

        @telling.synchronize do
          __drain # the others hear what happened before this one was attached
          Base.engines_attached = true
          @attached << engine unless @attached.include?(engine)
          tell(engine, :subscribe, Base.channels)
        end
        engine
      end

      # Detaches an engine.
      def detach(engine)
        @telling.synchronize do
          @attached.delete(engine)
          Base.engines_attached = false if @attached.empty?
        end
        engine
      end

      # Deprecated spelling of detach.
      def dettach(engine)
        Base.log(3, "Iodine::PubSub.dettach is deprecated, use detach")
        detach(engine)
      end

      # Tells the engine about every subscribed channel again (after it reconnected).
      def reset(engine)
        @telling.synchronize { tell(engine, :subscribe, Base.channels) }
        engine
      end

      # Tells the attached engines about the first and last subscribers since the last call,
      # in order (called after each subscription change from Ruby, and by a job for the
      # changes made elsewhere, such as a connection closing).
      def __drain
        @telling.synchronize do
          until (changes = Base.take_interest).empty?
            changes.each do |name, pattern, on|
              @attached.each { |engine| tell(engine, on ? :subscribe : :unsubscribe, [[name, pattern]]) }
            end
          end
        end
        nil
      end

      private

      def tell(engine, hook, channels)
        channels.each do |channel, pattern|
          engine.public_send(hook, channel, pattern ? true : nil)
        rescue StandardError => e
          Base.log(2, "pub/sub engine #{engine.class} #{hook} raised #{e.class}: #{e.message}")
        end
      end
    end
  end

  class << self
    # Subscribes this process: `subscribe(channel) { |ch, msg| }`, `subscribe(channel, opts)`,
    # `subscribe(to: channel, match: :redis, handler: callable)`. The block (or handler) runs
    # on a worker thread with the channel and the message as binary Strings. A new subscription
    # to the same name replaces the old one. Returns the channel as given.
    def subscribe(*args, &block)
      channel, opts = Base::PubSubArgs.subscription(args)
      handler = opts[:handler] || block
      raise ArgumentError, "block or :handler required for local subscriptions." unless handler
      raise TypeError, "the handler must answer call(channel, message)" unless handler.respond_to?(:call)

      name = channel.to_s.b
      pattern = opts[:match] == :redis
      Base.subscribe(name, pattern, handler)
      PubSub.__drain
      channel
    end

    # Ends this process's subscription named `name`; true if there was one.
    def unsubscribe(name)
      raise TypeError, "channel must be a String or Symbol" unless name.is_a?(String) || name.is_a?(Symbol)

      gone = Base.unsubscribe(name.to_s.b)
      PubSub.__drain
      gone
    end

    # Publishes `message` to `channel` through `engine` (nil: PubSub.default, false: this
    # process only); also `publish(to:, message:, engine:)`. Always true.
    def publish(*args)
      channel, message, engine = Base::PubSubArgs.publication(args)
      engine = PubSub::PROCESS if engine == false
      engine = PubSub.default if engine.nil?
      raise TypeError, "not a valid engine" unless engine.is_a?(PubSub::Engine)

      engine.publish(channel.to_s.b, message)
      true
    end
  end

  module Base
    # The argument forms of `subscribe` and `publish`.
    module PubSubArgs
      module_function

      # [channel, options] from the forms of `subscribe`.
      def subscription(args)
        raise ArgumentError, "wrong number of arguments (given #{args.size}, expected 1..2)" if args.size > 2

        opts = args.last.is_a?(Hash) ? args.pop : {}
        channel = args.first
        if channel.nil? && opts.key?(:channel)
          Base.log(3, "Iodine.subscribe: the :channel option is deprecated, use :to")
          channel = opts[:channel]
        end
        channel = opts[:to] if channel.nil?
        raise ArgumentError, "a target (:to) subject / stream / channel is required." if channel.nil?
        raise TypeError, "channel must be a String or Symbol" unless channel.is_a?(String) || channel.is_a?(Symbol)

        [channel, opts]
      end

      # [channel, message, engine] from the forms of `publish`.
      def publication(args)
        if args.size == 1 && args.first.is_a?(Hash)
          h = args.first
          args = [h[:to] || h[:channel], h[:message], h[:engine]]
        end
        raise ArgumentError, "wrong number of arguments (given #{args.size}, expected 2..3)" unless (2..3).cover?(args.size)

        channel, message, engine = args
        raise ArgumentError, "message is required." if message.nil? || message == false
        raise TypeError, "message must be a String" unless message.is_a?(String)
        raise ArgumentError, "a target (:to) subject / stream / channel is required." if channel.nil?
        raise TypeError, "channel must be a String or Symbol" unless channel.is_a?(String) || channel.is_a?(Symbol)

        [channel, message, engine]
      end
    end
  end
end
